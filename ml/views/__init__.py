"""ml's pages, one module per seam:

- catalog_pages  browse / movie / relabel pages with the production model's opinion
- review         the label-audit review queues, their actions, the progress page
- reports        model list, report, compare, promote, plots
- predict        the ad-hoc prediction page

What pages and the API share lives in ml.services (review: the queues and their actions).
"""

from .catalog_pages import BrowseView, BulkLabelView, ExportView, MovieWithScoresView, RelabelView, UndoChangeSetView
from .predict import predict_page
from .reports import model_compare, model_detail, model_list, plot_png, promote_view
from .review import ReviewItemView, review_list

__all__ = [
    "BrowseView",
    "BulkLabelView",
    "ExportView",
    "MovieWithScoresView",
    "RelabelView",
    "ReviewItemView",
    "UndoChangeSetView",
    "model_compare",
    "model_detail",
    "model_list",
    "plot_png",
    "predict_page",
    "promote_view",
    "review_list",
]
