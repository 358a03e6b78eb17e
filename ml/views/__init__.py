"""ml's pages, one module per seam:

- catalog_pages  browse / movie / relabel pages with the production model's opinion
- review         review queues and accepting suggestions
- reports        model list, report, compare, promote, plots
- predict        the ad-hoc prediction page

What pages and the API share lives in ml.services (review: queues and the opinion filter).
"""

from .catalog_pages import BrowseView, BulkLabelView, ExportView, MovieWithScoresView, RelabelView, UndoChangeSetView
from .predict import predict_page
from .reports import model_compare, model_detail, model_list, plot_png, promote_view
from .review import ReviewItemView, accept_suggestion, review_list

__all__ = [
    "BrowseView",
    "BulkLabelView",
    "ExportView",
    "MovieWithScoresView",
    "RelabelView",
    "ReviewItemView",
    "UndoChangeSetView",
    "accept_suggestion",
    "model_compare",
    "model_detail",
    "model_list",
    "plot_png",
    "predict_page",
    "promote_view",
    "review_list",
]
