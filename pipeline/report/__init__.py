"""``umt report``: run directories -> the paper's Table 2 / Table 3, significance tests, a case study.

``runs`` finds run directories and their states, ``aggregate`` summarises a system's seeds,
``significance`` compares two systems post by post, ``paper`` holds the paper's own numbers,
``layout`` arranges a table, ``cases`` picks the case study, ``build`` ties them into a
:class:`Report`, and ``render`` / ``figures`` draw it. Nothing here loads a model.
"""

from umt.pipeline.report.build import Report, build_report

__all__ = ["Report", "build_report"]
