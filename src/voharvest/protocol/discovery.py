"""Global image discovery, planned without I/O: which service to ask about which target.

The questions a discovery sends, and what it makes of the answers:

1. **Candidates** (:func:`candidates_query`, one registry query): every resource
   with an SIA 1.0 capability, an SIA 2.0 capability
   (``ivo://ivoa.net/std/sia#query-2.%``) or a TAP capability (main or
   auxiliary) on a resource that has an ObsCore table
   (``rr.res_table.table_utype LIKE 'ivo://ivoa.net/std/obscore#table-1.%'``)
   or declares the ObsCore data model (``rr.res_detail``, the older pattern
   pyvo also follows). Spectral and temporal constraints, the same for every
   target, are part of this query; the spatial one is not.
2. **Coverage** (:func:`coverage_queries`): each candidate's MOC, once
   (``SELECT ivoid, coverage FROM rr.stc_spatial WHERE ivoid IN (...)``).
   Every target is then tested locally (:class:`Coverage`, on mocpy): a
   (service, target) pair outside the coverage is never requested.
3. **Relationships** (:func:`served_by_queries`): ``isservedby`` rows among
   the candidates (``SELECT ivoid, related_id FROM rr.relationship WHERE
   relationship_type='isservedby' AND ivoid IN (...)``).
4. **Plan** (:func:`plan`): per target, the covering candidates, less those
   elided as pyvo.discover elides them (:func:`elide`): a resource's SIA 1.0
   when it also has SIA 2.0 or ObsCore, its SIA 2.0 when it has ObsCore, and
   any service served by another candidate. Targets that share a service are
   grouped, so that the requests can be batched: ObsCore with an upload of the
   targets (:func:`obscore_upload_query`), SIA 2.0 with several ``POS``
   (:func:`sia2_pos`).
5. **Datasets** (:class:`DatasetIndex`): the same access URL, or the same
   publisher DID, is one dataset, however many services and targets led to it.

The query shapes are part of the interface: VOFarm answers exactly them.

Each part has its own module: the values and the plan (``_discovery_plan``),
the registry queries (``_discovery_registry``), the searches sent to the
services (``_discovery_requests``) and the datasets (``_discovery_datasets``);
this module is the one to import them from.
"""

from __future__ import annotations

from ._discovery_datasets import Dataset, DatasetIndex, Origin
from ._discovery_plan import KINDS, Candidate, Elision, Plan, Target, elide, plan
from ._discovery_registry import (
    OBSCORE_MODEL_PATTERN,
    OBSCORE_TABLE_PATTERN,
    SIA1_ID,
    SIA2_PATTERN,
    TAP_IDS,
    candidates_from_resources,
    candidates_query,
    coverage_queries,
    parse_coverages,
    parse_served_by,
    served_by_queries,
)
from ._discovery_requests import (
    OBSCORE_TABLE,
    TARGET_COLUMN,
    assign_targets,
    multipart_body,
    obscore_target_query,
    obscore_upload_query,
    sia2_pos,
    targets_votable,
    time_interval,
    wavelength_metres,
)
from .coverage import CONE_MODES, INTERSECT_MODES, Coverage, max_cell_radius

__all__ = [
    "CONE_MODES",
    "INTERSECT_MODES",
    "KINDS",
    "OBSCORE_MODEL_PATTERN",
    "OBSCORE_TABLE",
    "OBSCORE_TABLE_PATTERN",
    "SIA1_ID",
    "SIA2_PATTERN",
    "TAP_IDS",
    "TARGET_COLUMN",
    "Candidate",
    "Coverage",
    "Dataset",
    "DatasetIndex",
    "Elision",
    "Origin",
    "Plan",
    "Target",
    "assign_targets",
    "candidates_from_resources",
    "candidates_query",
    "coverage_queries",
    "elide",
    "max_cell_radius",
    "multipart_body",
    "obscore_target_query",
    "obscore_upload_query",
    "parse_coverages",
    "parse_served_by",
    "plan",
    "served_by_queries",
    "sia2_pos",
    "targets_votable",
    "time_interval",
    "wavelength_metres",
]
