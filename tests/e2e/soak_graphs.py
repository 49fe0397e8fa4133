"""The soak test's prompts (API format): valid small restorations and the bad and cancelled
kinds, with the mix of the 100 (see ``test_e2e_soak.py``)."""

from __future__ import annotations

N_PROMPTS = 100
CANCEL_SIZE = 512          # the cancelled scratch restoration (attention: 128x128 latent)

R = "Global/checkpoints/restoration/"
DETECTOR = "Global/checkpoints/detection/FT_Epoch_latest.pt"
VAE_A, VAE_BQ, VAE_BS = (R + f"{v}/latest_net_G.pth" for v in
                         ("VAE_A_quality", "VAE_B_quality", "VAE_B_scratch"))
MAP_Q, MAP_S = (R + f"{m}/latest_net_mapping_net.pth" for m in
                ("mapping_quality", "mapping_scratch"))

# -- graphs (API format) ------------------------------------------------------------------------

class Graph:
    """A small API-format prompt under construction."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, **inputs) -> list:
        nid = str(len(self.nodes) + 1)
        self.nodes[nid] = {"class_type": class_type, "inputs": inputs}
        return [nid, 0]

    def find(self, class_type: str) -> str:
        return next(k for k, v in self.nodes.items() if v["class_type"] == class_type)


def _crop(g: Graph, i: int, size: int = 32, image: str = "old_photo.png") -> list:
    """A ``size`` px crop of the sample photo, at an offset unique to ``i`` (so that ComfyUI's
    cache never answers for it: each valid prompt really runs)."""
    src = g.add("LoadImage", image=image)
    return g.add("ImageCrop", image=src, width=size, height=size, x=(i * 7) % 200,
                 y=(i * 13) % 200)


def stripe_mask(g: Graph, w: int, h: int) -> list:
    """A horizontal scratch (1) across the middle of a ``w x h`` mask."""
    base = g.add("SolidMask", value=0.0, width=w, height=h)
    stripe = g.add("SolidMask", value=1.0, width=w, height=max(2, h // 16))
    return g.add("MaskComposite", destination=base, source=stripe, x=0, y=h // 2,
                 operation="add")


def _quality(g: Graph, image: list, prefix: str) -> None:
    enc = g.add("OldPhotoVAEEncodeOld", image=image, vae=g.add("OldPhotoVAELoader",
                                                                model_name=VAE_A), fit="resize")
    lat = g.add("OldPhotoLatentMap", latent=enc, mask_dilation=0,
                mapping=g.add("OldPhotoMappingLoader", model_name=MAP_Q))
    out = g.add("OldPhotoVAEDecodeClean", latent=lat, stretch="reference", restore_size=True,
                vae=g.add("OldPhotoVAELoader", model_name=VAE_BQ))
    g.add("SaveImage", images=out, filename_prefix=prefix)


def scratch_graph(g: Graph, image: list, mask: list, prefix: str) -> None:
    enc = g.add("OldPhotoVAEEncodeOld", image=image, mask=mask, fit="resize",
                vae=g.add("OldPhotoVAELoader", model_name=VAE_A))
    lat = g.add("OldPhotoLatentMap", latent=enc, mask=mask, mask_dilation=0,
                mapping=g.add("OldPhotoMappingLoader", model_name=MAP_S))
    out = g.add("OldPhotoVAEDecodeClean", latent=lat, stretch="reference", restore_size=True,
                vae=g.add("OldPhotoVAELoader", model_name=VAE_BS))
    g.add("SaveImage", images=out, filename_prefix=prefix)


def _detected(g: Graph, image: list) -> list:
    return g.add("OldPhotoDetectScratches", image=image, threshold=0.4, dilation=0,
                 scratch_model=g.add("OldPhotoScratchModelLoader", model_name=DETECTOR))


def _all_in_one(g: Graph, image: list, scratch: str, prefix: str) -> None:
    out = g.add("OldPhotoRestore", image=image, scratch=scratch, hr=False, faces="off",
                face_size="auto", models_folder="oldphoto")
    g.add("SaveImage", images=out, filename_prefix=prefix)


def warmup(i: int) -> Graph:
    """The first valid run: every model and node the queue uses."""
    g = Graph()
    img = _crop(g, i)
    _quality(g, img, "soak/warmup_quality")
    scratch_graph(g, img, _detected(g, img), "soak/warmup_scratch")
    _all_in_one(g, img, "on", "soak/warmup_all_in_one")
    return g


def valid(i: int, kind: str) -> Graph:
    g = Graph()
    img = _crop(g, i)
    if kind == "quality":
        _quality(g, img, "soak/quality")
    elif kind == "scratch":
        scratch_graph(g, img, stripe_mask(g, 32, 32), "soak/scratch")
    elif kind == "detect":
        scratch_graph(g, img, _detected(g, img), "soak/detect")
    elif kind == "all_in_one":
        _all_in_one(g, img, "on" if i % 2 else "off", "soak/all_in_one")
    else:
        raise ValueError(kind)
    return g


# kind -> (graph builder, where the error shows, node class that must carry it, substrings the
# message must contain); "validation": a 400 from /prompt; "execution": an execution_error
def _missing_image(i: int) -> Graph:
    g = Graph()
    _quality(g, _crop(g, i, image=f"soak_missing_{i}.png"), "soak/never")
    return g


def _missing_model(i: int) -> Graph:
    g = Graph()
    _quality(g, _crop(g, i), "soak/never")
    g.nodes[g.find("OldPhotoMappingLoader")]["inputs"]["model_name"] = \
        f"mapping_quality/missing_{i}.pth"
    return g


def _wrong_model(i: int) -> Graph:
    g = Graph()
    _quality(g, _crop(g, i), "soak/never")
    loader, wrong = [("OldPhotoMappingLoader", VAE_A), ("OldPhotoVAELoader", MAP_Q),
                     ("OldPhotoVAELoader", DETECTOR)][i % 3]
    g.nodes[g.find(loader)]["inputs"]["model_name"] = wrong
    return g


def _batch3_mask(g: Graph) -> list:
    """A mask batch of 3 (the crop's red channel, repeated)."""
    three = g.add("RepeatImageBatch", image=_crop(g, 0), amount=3)
    return g.add("ImageToMask", image=three, channel="red")


def _encode_batch_mismatch(i: int) -> Graph:
    g = Graph()
    two = g.add("RepeatImageBatch", image=_crop(g, i), amount=2)
    scratch_graph(g, two, _batch3_mask(g), "soak/never")
    return g


def _map_batch_mismatch(i: int) -> Graph:
    g = Graph()
    two = g.add("RepeatImageBatch", image=_crop(g, i), amount=2)
    scratch_graph(g, two, stripe_mask(g, 32, 32), "soak/never")
    g.nodes[g.find("OldPhotoLatentMap")]["inputs"]["mask"] = _batch3_mask(g)
    return g


def _too_small(i: int) -> Graph:
    g = Graph()
    _quality(g, _crop(g, i, size=8), "soak/never")
    return g


def _no_mask(i: int) -> Graph:
    g = Graph()
    scratch_graph(g, _crop(g, i), stripe_mask(g, 32, 32), "soak/never")
    del g.nodes[g.find("OldPhotoLatentMap")]["inputs"]["mask"]
    return g


def _mapped_twice(i: int) -> Graph:
    g = Graph()
    _quality(g, _crop(g, i), "soak/never")
    m = g.find("OldPhotoLatentMap")
    again = g.add("OldPhotoLatentMap", latent=[m, 0], mask_dilation=0,
                  mapping=g.nodes[m]["inputs"]["mapping"])
    g.nodes[g.find("OldPhotoVAEDecodeClean")]["inputs"]["latent"] = again
    return g


BAD = {
    "missing_image": (_missing_image, "validation", "LoadImage", ["soak_missing_"]),
    "missing_model": (_missing_model, "validation", "OldPhotoMappingLoader",
                      ["not found", "missing_", "models/oldphoto"]),
    "wrong_model": (_wrong_model, "validation", None, ["holds a", "not a", "load it with"]),
    "encode_batch_mismatch": (_encode_batch_mismatch, "execution", "OldPhotoVAEEncodeOld",
                              ["Encode Old Photo", "mask batch has 3", "has 2"]),
    "map_batch_mismatch": (_map_batch_mismatch, "execution", "OldPhotoLatentMap",
                           ["Old Photo Latent Map", "mask batch has 3", "has 2"]),
    "too_small": (_too_small, "execution", "OldPhotoVAEEncodeOld", ["8x8", "too small"]),
    "no_mask": (_no_mask, "execution", "OldPhotoLatentMap", ["needs the scratch mask"]),
    "mapped_twice": (_mapped_twice, "execution", "OldPhotoLatentMap", ["'clean' domain"]),
}

# how many of each in the 100 (the first valid one is the warm-up)
MIX = {
    "quality": 16, "scratch": 12, "detect": 3, "all_in_one": 3,
    "missing_image": 10, "missing_model": 4, "wrong_model": 9,
    "encode_batch_mismatch": 6, "map_batch_mismatch": 5, "too_small": 4, "no_mask": 4,
    "mapped_twice": 3,
    "interrupt": 10, "delete": 10,
}
assert sum(MIX.values()) + 1 == N_PROMPTS
