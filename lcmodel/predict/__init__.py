"""Block-wise prediction of a whole embedding raster into a Cloud Optimized GeoTIFF class map.

The raster is cut into windows aligned with its internal blocks (square multiples of the tile size
for tiled files, full-width row strips for striped files), so every block is decoded once. Each
window is read, its valid pixels (by the bundle's :class:`~lcmodel.embedding.NodataRule`, the same
rule as at extraction) are turned into float32 C-contiguous features and classified with one
``predict_proba`` call; the label is ``classes_[argmax]`` (what ``RandomForestClassifier.predict``
returns) and the confidence is ``round(100 * max probability)`` (half up). Nodata pixels are never
classified: they get the map's nodata value and confidence 255.

Engines (``engine``, :class:`lcmodel.forest.Predictor`): with ``"auto"`` (the default) a plain
``RandomForestClassifier`` or ``ExtraTreesClassifier`` is also compiled
(:class:`lcmodel.forest.CompiledForest`, a branch-free walk of the same trees that gives scikit-learn's
probabilities bit for bit); the first large block times both engines and the faster one classifies
the rest (the compiled walk wins on trees of bounded depth, scikit-learn can win on very deep,
unbalanced trees). ``engine="sklearn"``, or any other estimator, uses the estimator's own
``predict_proba``. The map does not depend on the engine.

With ``n_jobs > 1`` windows are classified in parallel, each worker reading its own windows with its
own dataset handle: for a plain forest by threads sharing one model (both engines release the GIL in
the tree walk), for other estimators by worker processes (each loading the model once). The results
are written in window order, so the output is identical for any ``n_jobs``. The estimator's own
``n_jobs`` is forced to 1 while predicting (one level of parallelism, and a fixed summation order of
the trees' probabilities).

GDAL's COG driver cannot write window by window: blocks go to a tiled DEFLATE GeoTIFF in a temporary
folder next to the output, overviews are built (mode for classes, average for confidence), the file
is copied with the COG driver and renamed into place only when complete. A failing block stops the
run with a :class:`~lcmodel.errors.PredictionError` naming its window and leaves no output behind.

Resumable: finished blocks are kept in ``<folder>/.<name>.partial/`` (:class:`BlockStore`) until the
outputs are in place, so a call killed at any point and made again with the same inputs and options
predicts only the missing blocks, and writes a map byte-identical to an uninterrupted run. The flow's
``predict_map`` task calls the same function, so a retried or re-run task resumes too. The output
folder is locked (:func:`lcmodel.io.output_lock`) while the call runs.

Modules: ``plan`` (window size, windows, map data type, overview factors, the :class:`PredictionPlan` of a
split prediction), ``classify`` (one block -> its arrays), ``executors`` (this thread, threads, worker
processes; results in order), ``store`` (the resumable block store), ``layers`` (one :class:`OutputLayer`
type for the map, confidence and uncertainty rasters), ``cog`` (layers -> tiled GeoTIFFs -> overviews ->
COGs), ``job`` (inputs and options -> a :class:`~lcmodel.predict.job.PredictionJob`), ``summary``
(:class:`PredictionSummary`, what a prediction wrote), ``api`` (the entry points below).
"""

from lcmodel.forest import ENGINES
from lcmodel.predict.api import (
    assemble_prediction,
    predict_blocks,
    predict_raster,
    prepare_prediction,
)
from lcmodel.predict.cog import COG_BLOCKSIZE
from lcmodel.predict.job import PredictionOptions
from lcmodel.predict.layers import CONFIDENCE_NODATA, OutputLayer
from lcmodel.predict.plan import (
    DEFAULT_MAX_WINDOW,
    OVERVIEW_MIN_SIZE,
    PredictionPlan,
    choose_block_size,
    effective_block_size,
    output_dtype,
    overview_factors,
    plan_windows,
)
from lcmodel.predict.store import BlockStore, partial_dir
from lcmodel.predict.summary import PredictionSummary

__all__ = [
    "PredictionSummary",
    "predict_raster",
    "PredictionOptions",
    "PredictionPlan",
    "prepare_prediction",
    "predict_blocks",
    "assemble_prediction",
    "BlockStore",
    "partial_dir",
    "choose_block_size",
    "output_dtype",
    "plan_windows",
    "effective_block_size",
    "overview_factors",
    "OutputLayer",
    "CONFIDENCE_NODATA",
    "COG_BLOCKSIZE",
    "DEFAULT_MAX_WINDOW",
    "OVERVIEW_MIN_SIZE",
    "ENGINES",
]
