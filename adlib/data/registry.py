"""The dataset registry: what each downloadable dataset is, where it lives, how it is checked.

One :class:`DatasetEntry` per archive (URL, checksum or why there is none, licence, the folder
it extracts to and the reader that takes it). :mod:`adlib.data.download` fetches them.
Nothing here touches the disk or the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from adlib.data.types import DownloadError

__all__ = ["MVTEC_CATEGORIES", "REGISTRY", "DatasetEntry", "registry_table"]

MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)


@dataclass(frozen=True)
class DatasetEntry:
    """One downloadable dataset (or one part of it).

    Attributes:
        name: registry key, e.g. ``"mvtec-hazelnut"``.
        title: human-readable description.
        url: direct download URL, or ``None`` when there is no stable public URL.
        sha256: expected hash (``"<hex>"`` = SHA-256, or ``"md5:<hex>"``), or ``None``.
        hash_note: why ``sha256`` is ``None`` (or where the published hash comes from).
        archive: ``"tar.xz"``, ``"tar.gz"``, ``"tar"`` or ``"zip"``.
        size: approximate download size as published, or ``None`` when not published.
        licence: licence / terms of use.
        extract_to: folder under the data root that the archive is extracted into.
        reader: the :mod:`adlib.data` reader that takes the returned folder.
        marker: a folder the reader root must contain (e.g. the category folder).
        wrap: when the archive lacks the ``marker`` folder at its top, put its content inside one.
        homepage: landing page with the terms and the official instructions.
        layout: the folder layout the reader expects (shown in errors).
    """

    name: str
    title: str
    url: str | None
    sha256: str | None
    hash_note: str
    archive: str
    size: str | None
    licence: str
    extract_to: str
    reader: str
    marker: str
    wrap: bool = False
    homepage: str = ""
    layout: str = ""

    @property
    def filename(self) -> str:
        """File name of the cached archive under ``<root>/downloads``."""
        return f"{self.name}.{self.archive}"


# --------------------------------------------------------------------------- registry
_MVTEC_SHARE = "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download"
# Per-category archives as linked from the MVTec AD download page (2021 links; MVTec now hands
# out download links after a form, so these may expire: then download by hand and pass `url=`).
_MVTEC_PARTS: dict[str, str] = {
    "bottle": f"{_MVTEC_SHARE}/420937370-1629951468/bottle.tar.xz",
    "cable": f"{_MVTEC_SHARE}/420937413-1629951498/cable.tar.xz",
    "capsule": f"{_MVTEC_SHARE}/420937454-1629951595/capsule.tar.xz",
    "carpet": f"{_MVTEC_SHARE}/420937484-1629951672/carpet.tar.xz",
    "grid": f"{_MVTEC_SHARE}/420937487-1629951814/grid.tar.xz",
    "hazelnut": f"{_MVTEC_SHARE}/420937545-1629951845/hazelnut.tar.xz",
    "leather": f"{_MVTEC_SHARE}/420937607-1629951964/leather.tar.xz",
    "metal_nut": f"{_MVTEC_SHARE}/420937637-1629952063/metal_nut.tar.xz",
    "pill": "https://www.mydrive.ch/shares/43421/11a215a5749fcfb75e331ddd5f8e43ee/download/"
    "420938129-1629953099/pill.tar.xz",
    "screw": f"{_MVTEC_SHARE}/420938130-1629953152/screw.tar.xz",
    "tile": f"{_MVTEC_SHARE}/420938133-1629953189/tile.tar.xz",
    "toothbrush": f"{_MVTEC_SHARE}/420938134-1629953256/toothbrush.tar.xz",
    "transistor": f"{_MVTEC_SHARE}/420938166-1629953277/transistor.tar.xz",
    "wood": f"{_MVTEC_SHARE}/420938383-1629953354/wood.tar.xz",
    "zipper": f"{_MVTEC_SHARE}/420938385-1629953449/zipper.tar.xz",
}
_MVTEC_HOME = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
_MVTEC_LICENCE = "CC BY-NC-SA 4.0 (c) MVTec Software GmbH: non-commercial use only"
_MVTEC_LAYOUT = (
    "<root>/<category>/train/good/*.png, <root>/<category>/test/<defect>/*.png, "
    "<root>/<category>/ground_truth/<defect>/*_mask.png"
)
_DAGM_RECORD = "https://zenodo.org/record/8086136"
_DAGM_LAYOUT = (
    "<root>/ClassN/{Train,Test}/NNNN.PNG and <root>/ClassN/{Train,Test}/Label/Labels.txt "
    "(+ NNNN_label.PNG masks)"
)
_SEM_HOME = "http://web.mi.imati.cnr.it/ettore/NanoTWICE/"
_RSDD_PAPER = (
    'J. Gan, Q. Li, J. Wang, H. Yu, "A hierarchical extractor-based visual rail surface '
    'inspection system", IEEE Sensors Journal 17(23), 2017'
)


def _build_registry() -> dict[str, DatasetEntry]:
    entries: list[DatasetEntry] = [
        DatasetEntry(
            name="mvtec",
            title="MVTec AD, all 15 categories",
            url=f"{_MVTEC_SHARE}/420938113-1629952094/mvtec_anomaly_detection.tar.xz",
            sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
            hash_note="SHA-256 as used by anomalib's MVTec AD DownloadInfo",
            archive="tar.xz",
            size="4.9 GB",
            licence=_MVTEC_LICENCE,
            extract_to="mvtec",
            reader="adlib.data.mvtec.read_mvtec(root, category)",
            marker="bottle",
            homepage=_MVTEC_HOME,
            layout=_MVTEC_LAYOUT,
        )
    ]
    for category, url in _MVTEC_PARTS.items():
        entries.append(
            DatasetEntry(
                name=f"mvtec-{category}",
                title=f"MVTec AD, category {category}",
                url=url,
                sha256=None,
                hash_note="MVTec publishes no checksum for the per-category archives",
                archive="tar.xz",
                size=None,
                licence=_MVTEC_LICENCE,
                extract_to="mvtec",
                reader="adlib.data.mvtec.read_mvtec(root, category)",
                marker=category,
                homepage=_MVTEC_HOME,
                layout=_MVTEC_LAYOUT,
            )
        )
    for number in range(1, 11):
        entries.append(
            DatasetEntry(
                name=f"dagm-class{number}",
                title=f"DAGM 2007 (Wieler & Hahn), Class{number}, Zenodo re-release",
                url=f"{_DAGM_RECORD}/files/Class{number}.zip?download=1",
                sha256=None,
                hash_note=(
                    "Zenodo shows an md5 per file on the record page; it is not recorded here "
                    "because it could not be checked offline: pass known_hash='md5:<hex>' "
                    "copied from the record page"
                ),
                archive="zip",
                size=None,
                licence="CC BY 4.0 (Zenodo record 8086136)",
                extract_to="dagm",
                reader=f'adlib.data.dagm.read_dagm(root, "Class{number}")',
                marker=f"Class{number}",
                wrap=True,
                homepage=_DAGM_RECORD,
                layout=_DAGM_LAYOUT,
            )
        )
    entries.append(
        DatasetEntry(
            name="sem",
            title="NanoTWICE SEM images of nanofibrous material (Carrera et al. 2017)",
            url=f"{_SEM_HOME}dfg05er_Data.zip",
            sha256=None,
            hash_note=(
                "the NanoTWICE page publishes no checksum, and serves the file over plain "
                "http (https could not be confirmed): integrity rests on a checksum you obtain "
                "elsewhere (known_hash), or on trusting the first download"
            ),
            archive="zip",
            size=None,
            licence="research use; terms and citation on the NanoTWICE page",
            extract_to="sem",
            reader="adlib.data.sem.read_sem(root)",
            marker="Normal",
            homepage=_SEM_HOME,
            layout="<root>/Normal/*.tif (5 defect-free), <root>/Anomalous/images/*.tif, "
            "<root>/Anomalous/gt/*.png (40 anomalous with masks)",
        )
    )
    entries.append(
        DatasetEntry(
            name="rsdd",
            title="RSDDs rail surface defects (Gan et al. 2017), Type-I and Type-II",
            url=None,
            sha256=None,
            hash_note="no stable public URL: distributed by the authors on request / file shares",
            archive="zip",
            size=None,
            licence="research use; ask the authors (Gan et al., IEEE Sensors Journal 2017)",
            extract_to="rsdd",
            reader="adlib.data.rsdd.read_rsdd(root)",
            marker="Type-I RSDDs dataset",
            homepage=_RSDD_PAPER,
            layout="<root>/Type-I RSDDs dataset/{Rail surface images,GroundTruth}/*.jpg "
            "(and the same for Type-II); see adlib.data.rsdd for the exact layout",
        )
    )
    return {entry.name: entry for entry in entries}


REGISTRY: dict[str, DatasetEntry] = _build_registry()
"""All known datasets, by name."""


def registry_table() -> list[dict[str, str]]:
    """One row per registry entry (for ``adlib data list`` and the docs)."""
    rows = []
    for entry in REGISTRY.values():
        rows.append(
            {
                "name": entry.name,
                "archive": entry.archive,
                "size": entry.size or "?",
                "checksum": "yes" if entry.sha256 else "no",
                "licence": entry.licence,
                "reader": entry.reader,
                "url": entry.url or "(none: manual download)",
            }
        )
    return rows


def _entry(name: str) -> DatasetEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise DownloadError(f"Unknown dataset {name!r}. Known datasets: {known}.") from None
