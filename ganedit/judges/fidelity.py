"""The field's standard figures on Inception features: FID, KID, IS and precision / recall through
torch-fidelity, and density / coverage on the same features (evaluation.md).

torch-fidelity reproduces the published TensorFlow numbers: its own Inception weights (the 2015-12-05
TF graph, converted), TF 1.x-style bilinear resize to 299 px, uint8 input. ganedit hands it exactly
that: generator images in [-1, 1] become uint8 (`(x + 1) * 127.5`, rounded, as PNGs are written), then
its feature extractor gives the 2048-d pool features (FID, KID, precision / recall, density / coverage)
and the 1008 unbiased logits (IS). The figures are torch-fidelity's own functions on those features.

Weights: `--inception-weights FILE`, else torch-fidelity's file in the torch hub cache
($TORCH_HOME/hub/checkpoints), fetched once from its release page (hash-checked by the name's sha256
prefix) and used offline after that. Files are read weights-only (never executed); torch-fidelity
receives the checked tensors.

Reference statistics (`save_stats` / `load_stats`): a safetensors file of the reference's pool features
with their mean and covariance, and metadata naming the extractor, the sha256 of its weights, the resize
and the sample count; a file made with another extractor or other weights is refused.

torch-fidelity is imported only here, and only when a standard metric is asked for.
"""

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ganedit.errors import GaneditError

EXTRACTOR = "inception-v3-compat"  # torch-fidelity's name for its TF-compatible InceptionV3
RESIZE = "tf1x-bilinear-299"  # torch-fidelity's interpolate_bilinear_2d_like_tensorflow1x to 299 x 299
INPUT = "uint8 from [-1, 1]: round((x + 1) * 127.5)"
STATS_FORMAT = "ganedit.reference-stats"
STANDARD_METRICS = ("fid", "kid", "is", "prc", "dc")
PRC_NEIGHBOURHOOD = 3  # torch-fidelity's default k for precision / recall (Kynkaanniemi et al. 2019)
DC_NEIGHBOURHOOD = 5  # Naeem et al. 2020's k for density / coverage (StudioGAN's too)
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # torch-fidelity's defaults; the subset shrinks to the smaller set
IS_SPLITS = 10  # the published Inception Score's 10 splits
PAPER_FID_SAMPLES = 50_000  # FID / KID / IS over 50k samples, as the papers and StudioGAN report them


def minimum_samples(metric: str) -> int:
    """The fewest images a metric can be computed from (per set): k + 1 for the k-NN metrics."""
    return {"fid": 2, "kid": 2, "is": IS_SPLITS, "prc": PRC_NEIGHBOURHOOD + 1, "dc": DC_NEIGHBOURHOOD + 1}[metric]


def _torch_fidelity():
    try:
        import torch_fidelity
    except ImportError:
        raise GaneditError(
            "the standard metrics (FID, KID, IS, precision / recall) need torch-fidelity: "
            "pip install 'torch-fidelity>=0.4'"
        ) from None
    return torch_fidelity


def default_weights_file() -> tuple[str, Path]:
    """(download address, where torch-fidelity's Inception weights live in the torch hub cache)."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3, Path(torch.hub.get_dir()) / "checkpoints" / URL_INCEPTION_V3.rsplit("/", 1)[1]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class InceptionFeatures:
    """torch-fidelity's InceptionV3 (features '2048' and 'logits_unbiased'), frozen, on `device`."""

    name = EXTRACTOR
    resize = RESIZE

    def __init__(self, weights: Path, device: torch.device | str = "cpu", batch_size: int = 64):
        _torch_fidelity()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        from ganedit.store.safe_torch import safe_torch_load

        self.weights_file = Path(weights)
        self.weights_sha256 = _sha256(self.weights_file)
        state_dict = safe_torch_load(self.weights_file)
        if not isinstance(state_dict, dict) or "fc.weight" not in state_dict:
            raise GaneditError(
                f"{self.weights_file}: not torch-fidelity's InceptionV3 weights (no fc.weight); "
                f"give the file {default_weights_file()[0]}"
            )
        # torch-fidelity would torch.load the user's file itself, unrestricted; it gets this buffer instead
        buffer = io.BytesIO()  # safe: only the tensors safe_torch_load read weights-only, re-saved here
        torch.save(state_dict, buffer)
        buffer.seek(0)
        try:
            self.network = FeatureExtractorInceptionV3(EXTRACTOR, ["2048", "logits_unbiased"], buffer)
        except RuntimeError as error:
            raise GaneditError(
                f"{self.weights_file}: does not fit torch-fidelity's InceptionV3 ({str(error).splitlines()[0][:120]})"
            ) from None
        self.network.to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size

    def describe(self) -> dict:
        return {"extractor": self.name, "weights_sha256": self.weights_sha256, "resize": self.resize, "input": INPUT}

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pool features [N, 2048], unbiased logits [N, 1008]), float32 on the CPU, of images in [-1, 1]
        (or uint8, as a folder is held)."""
        from ganedit.generators.sampling import to_uint8

        pools, logits = [], []
        for chunk in images.split(self.batch_size):
            pool, logit = self.network(to_uint8(chunk).to(self.device))
            pools.append(pool.cpu())
            logits.append(logit.cpu())
        return torch.cat(pools), torch.cat(logits)


def load_inception(weights: Path | str | None = None, device: torch.device | str = "cpu") -> InceptionFeatures:
    """torch-fidelity's Inception from `weights` (a local copy), else its file in the torch hub cache,
    fetched once when not offline. Missing while offline: one line naming the file, where, and how."""
    _torch_fidelity()
    from ganedit.store.zoo import is_offline

    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise GaneditError(f"--inception-weights {path}: no such file")
        return InceptionFeatures(path, device)
    url, path = default_weights_file()
    if not path.is_file():
        if is_offline():
            raise GaneditError(
                f"Inception weights {path.name} not found in {path.parent} and offline mode is on; download {url} "
                "into that folder, or give a local copy with --inception-weights FILE"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), hash_prefix=path.name.rsplit("-", 1)[1][:8], progress=False)
        except (OSError, RuntimeError) as error:
            raise GaneditError(
                f"cannot download the Inception weights {url} ({str(error).splitlines()[0][:120]}); download it into "
                f"{path.parent}, or give a local copy with --inception-weights FILE"
            ) from None
    return InceptionFeatures(path, device)


# ---------------------------------------------------------------------------------------------------
# Reference statistics


@dataclass
class ReferenceStats:
    """A reference set's Inception pool features [N, 2048], their mean / covariance, and what made them."""

    features: torch.Tensor
    source: str
    extractor: dict  # InceptionFeatures.describe()

    @property
    def samples(self) -> int:
        return len(self.features)

    def fid_statistics(self) -> dict:
        from torch_fidelity.metric_fid import fid_features_to_statistics

        return fid_features_to_statistics(self.features)


def reference_from_images(inception: InceptionFeatures, images: torch.Tensor, source: str) -> ReferenceStats:
    return ReferenceStats(inception(images)[0], source, inception.describe())


def save_stats(path: Path | str, stats: ReferenceStats) -> Path:
    """Write reference statistics (safetensors, atomically) with their extractor, resize and sample count."""
    from safetensors.torch import save_file

    from ganedit.store.atomic import atomic_write
    from ganedit.version import __version__

    moments = stats.fid_statistics()
    tensors = {
        "features": stats.features.float().contiguous(),
        "mu": torch.from_numpy(moments["mu"]).contiguous(),
        "sigma": torch.from_numpy(moments["sigma"]).contiguous(),
    }
    metadata = {"format": STATS_FORMAT, "samples": str(stats.samples), "source": stats.source,
                "ganedit_version": __version__, "extractor": json.dumps(stats.extractor)}  # fmt: skip
    return atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))


def is_stats_file(path: Path) -> bool:
    """Whether `path` is a reference statistics file written by save_stats."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == STATS_FORMAT
    except Exception:  # not safetensors at all: some other file
        return False


def load_stats(path: Path | str, inception: InceptionFeatures) -> ReferenceStats:
    """Reference statistics from `path`, refused unless made with `inception`'s extractor and weights."""
    from safetensors import safe_open

    path = Path(path)
    if not is_stats_file(path):
        raise GaneditError(f"{path}: not a ganedit reference statistics file; make one with `ganedit eval "
                           "--save-stats`")  # fmt: skip
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        features = handle.get_tensor("features")
    made_with = json.loads(metadata["extractor"])
    wanted = inception.describe()
    for key in ("extractor", "weights_sha256", "resize"):
        if made_with.get(key) != wanted[key]:
            raise GaneditError(
                f"{path}: statistics from another feature extractor ({key} {made_with.get(key)!r}, here "
                f"{wanted[key]!r}); recompute them with `ganedit eval ... --save-stats` and these weights"
            )
    return ReferenceStats(features, metadata.get("source", str(path)), made_with)


# ---------------------------------------------------------------------------------------------------
# The metrics


def standard_metrics(
    metrics: list[str], pool: torch.Tensor, logits: torch.Tensor, reference: ReferenceStats | None
) -> dict:
    """The asked standard metrics of generated features against a reference (None: only IS), with counts.

    FID, KID (mean and std over subsets), IS (mean and std over splits) and precision / recall are
    torch-fidelity's own functions with its defaults; KID's subset size is min(1000, N, M).
    """
    _torch_fidelity()
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    out: dict = {}
    if "is" in metrics:
        scores = isc_features_to_metric(logits, splits=IS_SPLITS, shuffle=True, rng_seed=2020)
        out.update({"is": scores["inception_score_mean"], "is_std": scores["inception_score_std"],
                    "is_splits": IS_SPLITS})  # fmt: skip
    if reference is None:
        return out
    real = reference.features
    if "fid" in metrics:
        out["fid"] = fid_statistics_to_metric(fid_features_to_statistics(pool), reference.fid_statistics(), False)[
            "frechet_inception_distance"
        ]
    if "kid" in metrics:
        size = min(KID_SUBSET_SIZE, len(pool), len(real))
        scores = kid_features_to_metric(pool, real, kid_subsets=KID_SUBSETS, kid_subset_size=size, verbose=False)
        out.update({"kid": scores["kernel_inception_distance_mean"], "kid_std": scores["kernel_inception_distance_std"],
                    "kid_subset_size": size})  # fmt: skip
    if "prc" in metrics:
        scores = prc_features_to_metric(pool, real, prc_neighborhood=PRC_NEIGHBOURHOOD, verbose=False)
        out.update({"precision": scores["precision"], "recall": scores["recall"]})
    if "dc" in metrics:
        out.update(density_coverage(pool, real, DC_NEIGHBOURHOOD))
    return out


def density_coverage(fake: torch.Tensor, real: torch.Tensor, k: int = DC_NEIGHBOURHOOD) -> dict:
    """Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative
    Models", eqs. 3-4), as their `prdc` package computes them:

    r_i = distance from real sample i to its k-th nearest real neighbour (itself excluded);
    density = 1 / (k M) sum_j sum_i [ |fake_j - real_i| < r_i ]  (M fakes; can exceed 1);
    coverage = 1 / N sum_i [ min_j |fake_j - real_i| < r_i ]     (N reals).
    """
    real, fake = real.double(), fake.double()
    if len(real) < k + 1 or len(fake) < 1:
        raise ValueError(f"density / coverage with k = {k} needs at least {k + 1} real samples, got {len(real)}")
    radii = torch.cdist(real, real).kthvalue(k + 1, dim=1).values  # the 1st is the sample itself
    inside = torch.cdist(real, fake) < radii[:, None]  # [N, M]
    return {"density": float(inside.sum()) / (k * len(fake)), "coverage": float(inside.any(dim=1).double().mean())}
