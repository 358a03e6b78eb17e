// Live job progress: poll small JSON endpoints with fetch, update bars in place,
// stop when the job has finished (and reload once so the page shows results/actions).
window.GenrewebJobs = (function () {
  const POLL_MS = 1000;

  function setBar(bar, pct) {
    bar.setAttribute("aria-valuenow", Math.round(pct));
    bar.firstElementChild.style.width = pct + "%";
  }

  function pollDetail(section) {
    if (!section || section.dataset.finished === "1") return;
    const url = section.dataset.statusUrl;
    const tick = async () => {
      let job;
      try {
        const resp = await fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"});
        if (!resp.ok) throw new Error(resp.status);
        job = await resp.json();
      } catch (err) { setTimeout(tick, POLL_MS * 3); return; }  // transient: back off, keep polling
      setBar(document.getElementById("job-progress"), job.progress);
      document.getElementById("job-percent").textContent = Math.round(job.progress);
      const eta = document.getElementById("job-eta");
      if (eta) eta.textContent = job.eta ? "· " + job.eta : "";
      const status = document.getElementById("job-status");
      status.textContent = job.status_display;
      status.className = "status " + job.status;
      document.getElementById("job-step").textContent = job.step;
      document.getElementById("job-log").textContent = job.log_tail.join("\n");
      if (job.error) {
        const box = document.getElementById("job-error");
        box.hidden = false; box.querySelector("pre").textContent = job.error;
      }
      if (job.finished) { section.dataset.finished = "1"; setTimeout(() => location.reload(), 300); return; }
      setTimeout(tick, POLL_MS);
    };
    setTimeout(tick, POLL_MS);
  }

  // A record that is not a job but runs like one (a bulk change set): poll its status URL,
  // write each value into the section's [data-field] element (numbers with thousands
  // separators), reload once when it has finished.
  function pollFields(section) {
    if (!section || section.dataset.finished === "1") return;
    const tick = async () => {
      let data;
      try {
        const resp = await fetch(section.dataset.statusUrl, {headers: {Accept: "application/json"}, credentials: "same-origin"});
        if (!resp.ok) throw new Error(resp.status);
        data = await resp.json();
      } catch (err) { setTimeout(tick, POLL_MS * 3); return; }  // transient: back off, keep polling
      for (const el of section.querySelectorAll("[data-field]")) {
        const value = data[el.dataset.field];
        if (value !== undefined) el.textContent = typeof value === "number" ? value.toLocaleString("en-US") : value;
      }
      if (data.finished) { section.dataset.finished = "1"; setTimeout(() => location.reload(), 300); return; }
      setTimeout(tick, POLL_MS);
    };
    setTimeout(tick, POLL_MS);
  }

  function pollList(url) {
    const rows = () => Array.from(document.querySelectorAll("tr[data-job][data-finished='0']"));
    const tick = async () => {
      const pending = rows();
      if (!pending.length) return;
      try {
        const resp = await fetch(url + "?ids=" + pending.map((r) => r.dataset.job).join(","), {credentials: "same-origin"});
        const data = await resp.json();
        for (const job of data.jobs) {
          const row = document.querySelector(`tr[data-job='${job.id}']`);
          setBar(row.querySelector(".progress"), job.progress);
          const status = row.querySelector("[data-field=status]");
          status.textContent = job.status_display; status.className = "status " + job.status;
          row.querySelector("[data-field=step]").textContent = job.step;
          if (job.finished) row.dataset.finished = "1";
        }
      } catch (err) { /* keep polling; the next tick retries */ }
      setTimeout(tick, POLL_MS * 2);
    };
    setTimeout(tick, POLL_MS);
  }

  return {pollDetail, pollFields, pollList};
})();
