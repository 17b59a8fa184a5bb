"""Plots: matplotlib, seaborn-style signatures (``data=``, ``ax=`` in, Axes out).

One module per view (``funnel``, ``pipeline``, ``forecast``); everything is
re-exported here, so ``funnelkit.plots.funnel_chart`` is the public name.
Plots never call ``plt.show()``.
"""

from ._style import percent_axis
from .forecast import backtest_chart, calibration_chart, fan_chart, target_chart
from .funnel import cohort_heatmap, compare_chart, funnel_chart, time_to_convert_chart, trend_chart
from .pipeline import duration_chart, pipeline_board, rep_chart, swimlane, waterfall_chart

__all__ = [
    "backtest_chart",
    "calibration_chart",
    "fan_chart",
    "target_chart",
    "cohort_heatmap",
    "compare_chart",
    "time_to_convert_chart",
    "trend_chart",
    "duration_chart",
    "funnel_chart",
    "percent_axis",
    "pipeline_board",
    "rep_chart",
    "swimlane",
    "waterfall_chart",
]
