"""The bottom layer every app may import: roles and permissions, the shared vocabulary of
long-running work (cancellation, secrets, storable text), request-input rules, the API
schema machinery and sign-in. It imports no other genreweb app."""
