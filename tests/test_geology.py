"""Tests for fwi_attn.data.geology: velocity-model families and model import."""

import copy

import h5py
import numpy as np
import pytest

from fwi_attn.config import ConfigError, load_config
from fwi_attn.data.geology import FAMILIES, KIND_CODES, generate_velocity, plan_velocity
from fwi_attn.data.velocity_files import load_velocities, save_segy

DX = 10.0  # m

GEOLOGY = {
    "vmin": 1500.0,
    "vmax": 4500.0,
    "water": {"probability": 0.0, "depth": [0.0, 100.0], "velocity": 1500.0},
    "layers": {
        "count": [4, 10],
        "v_top": [1600.0, 2400.0],
        "v_bottom": [3000.0, 4000.0],
        "curvature": [0.0, 0.08],
        "jitter": 150.0,
    },
    "faults": {"probability": 0.3, "max_throw": 80.0},
    "salt": {
        "bodies": [1, 3],
        "velocity": [4400.0, 4500.0],
        "width": [0.15, 0.45],
        "height": [0.12, 0.35],
        "top": [0.15, 0.6],
        "roughness": 0.3,
    },
}


def params(**changes):
    """A copy of GEOLOGY with dotted keys replaced, e.g. params(**{"salt.bodies": [0, 0]})."""
    p = copy.deepcopy(GEOLOGY)
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node = p
        for key in path:
            node = node[key]
        node[last] = value
    return p


def gen(family, n=16, seed=0, nz=70, nx=70, p=None):
    return generate_velocity(family, n, np.random.default_rng(seed), nz, nx, DX, p or GEOLOGY)


# ------------------------------------------------------------------------------ generation


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("grid", [(70, 70), (33, 57)])
def test_shape_dtype_bounds(family, grid):
    v = gen(family, n=12, nz=grid[0], nx=grid[1])
    assert v.shape == (12, *grid)
    assert v.dtype == np.float32
    assert np.isfinite(v).all()
    assert v.min() >= GEOLOGY["vmin"] and v.max() <= GEOLOGY["vmax"]


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_identical_different_seed_differs(family):
    a, b, c = gen(family, seed=7), gen(family, seed=7), gen(family, seed=8)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_output_independent_of_block_size(monkeypatch):
    import fwi_attn.data.geology as geology

    whole = gen("salt", n=20, seed=1)
    monkeypatch.setattr(geology, "_BLOCK_CELLS", 3 * 70 * 70)  # 3 models per block
    assert gen("salt", n=20, seed=1).tobytes() == whole.tobytes()


def test_salt_blobs_salt_present_in_every_model():
    v = gen("salt_blobs", n=32)
    salt = v >= GEOLOGY["salt"]["velocity"][0]
    assert salt.any(axis=(1, 2)).all()
    assert 0.0 < salt.mean() < 0.6


@pytest.mark.parametrize("family", ["salt", "salt_blobs"])
def test_no_salt_when_zero_bodies(family):
    v = gen(family, n=32, p=params(**{"salt.bodies": [0, 0]}))
    assert (v < GEOLOGY["salt"]["velocity"][0]).all()


@pytest.mark.parametrize("family", ["salt", "salt_blobs"])
def test_salt_top_below_surface(family):
    # salt.top >= 0.15 of nz: the top rows are sediment, so salt sits under sediments (for salt,
    # the rugose top's highest bump too)
    v = gen(family, n=32, p=params(**{"salt.rugosity": [40.0, 40.0]}))
    top_rows = int(0.15 * 70)
    assert (v[:, :top_rows] < GEOLOGY["salt"]["velocity"][0]).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_velocity_increases_with_depth(family):
    p = params(**{"salt.bodies": [0, 0]})
    v = gen(family, n=32, p=p)
    top, bottom = v[:, :10].mean(axis=(1, 2)), v[:, -10:].mean(axis=(1, 2))
    assert (top < bottom).mean() > 0.9
    assert top.mean() < bottom.mean()


def test_flat_layers_without_faults_are_laterally_constant():
    p = params(**{"salt.bodies": [0, 0], "layers.curvature": [0.0, 0.0], "faults.probability": 0.0,
                  "faults.count": [0, 0], "layers.lateral": [0.0, 0.0]})
    v = gen("salt_blobs", p=p)
    assert (v == v[:, :, :1]).all()
    v = gen("salt", p=p)
    assert (v == v[:, :, :1]).all()
    assert (gen("flatvel") == gen("flatvel")[:, :, :1]).all()


def test_faults_displace_layers():
    p = params(**{"salt.bodies": [0, 0], "layers.curvature": [0.0, 0.0], "faults.probability": 1.0,
                  "faults.count": [2, 2], "layers.lateral": [0.0, 0.0]})
    for family in ("salt_blobs", "salt"):
        v = gen(family, p=p)
        lateral = (v != v[:, :, :1]).any(axis=(1, 2))
        assert lateral.mean() > 0.8  # a throw can miss every interface only rarely
    assert (gen("flatfault") != gen("flatfault")[:, :, :1]).any(axis=(1, 2)).all()


def test_curved_families_undulate():
    v = gen("curvevel")
    assert (v != v[:, :, :1]).any(axis=(1, 2)).all()


def test_openfwi_layer_count():
    v = gen("flatvel", n=64)
    counts = [np.unique(m[:, 0]).size for m in v]
    assert min(counts) >= 2 and max(counts) <= 5


@pytest.mark.parametrize("family", FAMILIES)
def test_water_layer(family):
    p = params(**{"water.probability": 1.0, "water.depth": [100.0, 100.0], "water.velocity": 1500.0})
    v = gen(family, p=p)
    assert (v[:, :10] == 1500.0).all()  # rows at 0..90 m lie above the 100 m sea floor
    assert (v[:, 10] > 1500.0).any()


@pytest.mark.parametrize("family", ["salt", "salt_blobs"])
def test_no_water_by_default(family):
    v = gen(family, p=params(**{"layers.v_top": [2000.0, 2000.0], "layers.jitter": 0.0}))
    assert (v[:, 0] > 1500.0).all()


def test_unknown_family_lists_families():
    with pytest.raises(ValueError, match="curvefault"):
        gen("marmousi")


@pytest.mark.parametrize(
    "change, key",
    [
        ({"vmin": 5000.0}, "vmin"),
        ({"salt.width": [0.5, 0.1]}, "geology.salt.width"),
        ({"water.probability": 1.5}, "geology.water.probability"),
    ],
)
def test_bad_params_name_the_key(change, key):
    with pytest.raises(ValueError, match=key):
        gen("salt", p=params(**change))


def test_missing_param_takes_the_schema_default_and_a_misspelt_one_is_named():
    # A plain dict is default-filled like load_config fills a file; a typo is not silently ignored.
    p = params()
    del p["salt"]["roughness"]
    assert gen("salt", p=p).tobytes() == gen("salt", p=params(**{"salt.roughness": 0.3})).tobytes()
    assert gen("salt", p={}).tobytes() == gen("salt", p=load_config().geology).tobytes()
    p["salt"]["roughnes"] = 0.5
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'roughnes' in geology.salt; allowed keys: bodies"):
        gen("salt", p=p)


@pytest.mark.parametrize(
    "change, key",
    [
        ({"salt.roughness": 1.5}, "geology.salt.roughness"),
        ({"layers.count": [0, 3]}, "geology.layers.count.0"),
        ({"layers.count": [4, 200]}, "geology.layers.count.1"),
        ({"water.depth": "deep"}, "geology.water.depth"),
        ({"salt.width": [0.5, 0.1]}, "geology.salt.width"),
        ({"vmin": 5000.0}, "geology.vmin"),
    ],
)
def test_params_errors_name_the_key_as_load_config(change, key):
    # One source of truth: the schema and config's checks, whichever way the params come in.
    with pytest.raises(ConfigError) as direct:
        gen("salt", p=params(**change))
    with pytest.raises(ConfigError) as loaded:
        load_config({"geology": params(**change)})
    source, message = str(direct.value).split(": ", 1)
    assert source == "generate_velocity params"
    assert key in message
    assert message == str(loaded.value).split(": ", 1)[1]


# ------------------------------------------------------------------- salt-province family

SALT_THRESHOLD = load_config().evaluate.salt_threshold


def only(kind, **changes):
    """Params whose every window holds exactly one body of ``kind``."""
    kinds = {k: float(k == kind) for k in KIND_CODES}
    return params(**{"salt.kinds": kinds, "salt.bodies": [1, 1], "salt.none_probability": 0.0, **changes})


def test_salt_mask_matches_evaluate_threshold():
    # Sediments are capped at layers.v_deep's upper bound, salt starts at salt.velocity's lower
    # one; evaluate.salt_threshold lies between them, so "salt" means the same everywhere.
    cfg = load_config()
    g = cfg.geology
    assert g.layers.v_deep[1] < cfg.evaluate.salt_threshold <= g.salt.velocity[0]
    p = params(**{"layers.jitter": 400.0, "layers.lateral": [0.1, 0.1], "layers.burial": [20000.0, 20000.0]})
    plan = plan_velocity("salt", 32, np.random.default_rng(0), 48, 48, DX, p)
    v = generate_velocity("salt", 32, np.random.default_rng(0), 48, 48, DX, p)
    assert plan["salt_on"].any()
    sediments = v[v < GEOLOGY["salt"]["velocity"][0]]
    assert sediments.max() <= g.layers.v_deep[1]  # deep, fast, jittered sediments still under the cap
    assert ((v > SALT_THRESHOLD) == (v >= GEOLOGY["salt"]["velocity"][0])).all()


def test_body_kinds_and_empty_windows_at_their_rates():
    rates = {"diapir": 0.1, "mushroom": 0.2, "sheet": 0.3, "massif": 0.4}
    p = params(**{"salt.kinds": rates, "salt.none_probability": 0.2, "salt.bodies": [1, 3]})
    plan = plan_velocity("salt", 3000, np.random.default_rng(1), 32, 32, DX, p)
    kinds = plan["salt_kind"][plan["salt_on"]]
    for name, rate in rates.items():
        assert abs((kinds == KIND_CODES[name]).mean() - rate) < 0.025, name
    assert abs((~plan["salt_on"].any(axis=1)).mean() - 0.2) < 0.025
    # rates are relative; a zero rate never draws that kind
    plan = plan_velocity("salt", 500, np.random.default_rng(1), 32, 32, DX,
                         params(**{"salt.kinds": {"diapir": 0.0, "mushroom": 0.0, "sheet": 2.0, "massif": 2.0}}))
    kinds = plan["salt_kind"][plan["salt_on"]]
    assert set(np.unique(kinds)) == {KIND_CODES["sheet"], KIND_CODES["massif"]}


def test_empty_windows_hold_no_salt():
    p = params(**{"salt.none_probability": 0.5})
    plan = plan_velocity("salt", 64, np.random.default_rng(2), 32, 32, DX, p)
    v = generate_velocity("salt", 64, np.random.default_rng(2), 32, 32, DX, p)
    has = (v > SALT_THRESHOLD).any(axis=(1, 2))
    assert (~plan["salt_on"].any(axis=1) <= ~has).all() and 10 < (~has).sum() < 54


def overhangs(model: np.ndarray) -> bool:
    """Whether some column holds salt above sediment above salt."""
    salt = model > SALT_THRESHOLD
    for col in salt.T:
        runs = np.flatnonzero(np.diff(col.astype(np.int8)))  # salt/sediment transitions
        if col[0]:
            runs = np.concatenate([[-1], runs])
        if len(runs) >= 3:  # salt starts, ends, starts again below
            return True
    return False


def test_mushroom_heads_overhang_sediments():
    v = gen("salt", n=40, nz=48, nx=48, p=only("mushroom", **{"salt.top": [0.15, 0.4]}))
    assert np.mean([overhangs(m) for m in v]) > 0.9
    # sheets without feeders lie on sediment, with salt below only where a ragged tip curls
    v = gen("salt", n=40, nz=48, nx=48, p=only("sheet", **{"salt.feeder_probability": 0.0}))
    assert np.mean([overhangs(m) for m in v]) < 0.5


def test_large_bodies_and_diapirs_reach_the_bottom_edge_and_sheets_lie_on_sediment():
    for kind in ("massif", "diapir", "mushroom"):
        v = gen("salt", n=24, nz=40, nx=40, p=only(kind))
        assert (v[:, -1] > SALT_THRESHOLD).any(axis=1).all(), kind
    v = gen("salt", n=24, nz=40, nx=40, p=only("massif"))
    assert np.median((v[:, -1] > SALT_THRESHOLD).mean(axis=1)) > 0.3  # wide at the bottom too
    v = gen("salt", n=24, nz=40, nx=40, p=only("sheet", **{"salt.feeder_probability": 0.0, "salt.top": [0.15, 0.3]}))
    assert not (v[:, -1] > SALT_THRESHOLD).any()
    v = gen("salt", n=200, nz=40, nx=40)  # the default mix holds both
    bottom = (v[:, -1] > SALT_THRESHOLD).any(axis=1)
    assert 0.3 < bottom.mean() < 0.95


def test_sediment_velocity_rises_with_depth_from_the_seabed_trend():
    v = gen("salt", n=64, nz=48, nx=48)
    sediment = np.where(v < SALT_THRESHOLD, v, np.nan)
    z = np.arange(48)
    rows = np.nanmean(sediment, axis=(0, 2))
    assert rows[-8:].mean() - rows[:8].mean() > 100.0  # m/s over 400 m of burial
    cells = np.isfinite(sediment).sum(axis=2)  # sediment cells per row of each model
    row_means = np.where(cells > 0, np.nansum(sediment, axis=2) / np.maximum(cells, 1), np.nan)
    slopes = [np.polyfit(z[np.isfinite(r)], r[np.isfinite(r)], 1)[0] for r in row_means if np.isfinite(r).sum() > 10]
    assert np.mean(np.array(slopes) > 0) > 0.9
    # a window at the sea floor starts at the mudline velocity and grows by the compaction trend
    p = params(**{"layers.burial": [0.0, 0.0], "layers.jitter": 0.0, "salt.bodies": [0, 0],
                  "layers.lateral": [0.0, 0.0], "layers.v_seabed": [1700.0, 1700.0], "faults.count": [0, 0],
                  "layers.v_deep": [3700.0, 3700.0], "layers.compaction": [2000.0, 2000.0]})
    v = gen("salt", n=4, nz=40, nx=16, p=p)
    depth = np.arange(40) * DX
    np.testing.assert_allclose(v[:, :, 0], np.broadcast_to(3700 - 2000 * np.exp(-depth / 2000), (4, 40)), rtol=1e-5)


def sediment_under_salt(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per model, as fractions of its salt area: sediment cells with salt above them in their
    column (sub-salt), and those with salt above and below (trapped under an overhang)."""
    salt = v > SALT_THRESHOLD
    above = np.maximum.accumulate(salt, axis=1)
    below = np.maximum.accumulate(salt[:, ::-1], axis=1)[:, ::-1]
    area = np.maximum(salt.sum(axis=(1, 2)), 1)
    return (above & ~salt).sum(axis=(1, 2)) / area, (above & below & ~salt).sum(axis=(1, 2)) / area


def test_overhangs_of_mushrooms_and_subsalt_sediment_of_sheets():
    sub, trapped = {}, {}
    for kind in KIND_CODES:
        sub[kind], trapped[kind] = sediment_under_salt(gen("salt", n=48, nz=48, nx=48, seed=5, p=only(kind)))
    # a mushroom's head overhangs the sediments that lie on its pedestal, far more than a
    # diapir's cap or a large body's flank does
    assert np.median(trapped["mushroom"]) > 0.2
    assert np.median(trapped["mushroom"]) > 3 * max(np.median(trapped["diapir"]), np.median(trapped["massif"]))
    # a sheet is thin and wide over sediments: more sub-salt sediment than salt; a large body
    # reaches down past the bottom edge with little sediment under it
    assert np.median(sub["sheet"]) > 1.0
    assert np.median(sub["massif"]) < 0.3


def test_salt_area_distribution_holds_small_and_large_bodies():
    area = {kind: (gen("salt", n=64, nz=32, nx=32, seed=6, p=only(kind)) > SALT_THRESHOLD).mean(axis=(1, 2))
            for kind in KIND_CODES}
    assert np.median(area["massif"]) > 2 * np.median(area["diapir"])  # large bodies are large
    assert np.percentile(area["massif"], 90) > 0.4
    for kind in ("diapir", "mushroom", "sheet"):
        assert 0.05 < np.median(area[kind]) < 0.25, kind
    # the default mix (schema defaults): empty windows, mid-sized and large salt areas
    v = generate_velocity("salt", 400, np.random.default_rng(6), 32, 32, DX, {})
    mix = (v > SALT_THRESHOLD).mean(axis=(1, 2))
    assert 0.07 < (mix == 0).mean() < 0.16  # salt.none_probability 0.1, and a few bodies off-window
    assert 0.18 < mix.mean() < 0.35
    assert (mix > 0.4).mean() > 0.1 and np.percentile(mix, 95) > 0.45


def test_vmin_vmax_clip_every_part_of_the_model():
    # Jitter and lateral variation push sediments past the bounds of their ranges; the output
    # is clipped to [vmin, vmax], and the bounds are reached.
    p = params(**{"vmin": 1600.0, "vmax": 4450.0, "layers.v_seabed": [1600.0, 1600.0], "layers.burial": [0.0, 0.0],
                  "layers.jitter": 400.0, "layers.lateral": [0.1, 0.1], "salt.velocity": [4450.0, 4450.0],
                  "layers.v_deep": [3700.0, 4000.0], "water.probability": 0.5, "water.velocity": 1600.0})
    v = gen("salt", n=32, nz=32, nx=32, p=p)
    assert v.min() == 1600.0 and v.max() == 4450.0


def test_drag_raises_strata_along_rooted_salt():
    # With drag, sediments beside a diapir come from deeper: faster than without drag.
    base = {"salt.drag_width": [0.1, 0.1], "layers.curvature": [0.0, 0.0], "faults.count": [0, 0]}
    with_drag = gen("salt", n=24, nz=48, nx=48, p=only("diapir", **base, **{"salt.drag": [1.0, 1.0]}))
    without = gen("salt", n=24, nz=48, nx=48, p=only("diapir", **base, **{"salt.drag": [0.0, 0.0]}))
    salt = with_drag > SALT_THRESHOLD
    assert (salt == (without > SALT_THRESHOLD)).all()  # drag moves strata, never salt
    from scipy import ndimage

    near = ndimage.binary_dilation(salt, structure=np.ones((1, 1, 5), bool)) & ~salt
    assert (with_drag[near] - without[near]).mean() > 5.0
    assert np.median(with_drag[near] - without[near]) > 0.0


@pytest.mark.parametrize(
    "change, key",
    [
        ({"salt.kinds": {"diapir": 0.0, "mushroom": 0.0, "sheet": 0.0, "massif": 0.0}}, "geology.salt.kinds"),
        ({"salt.kinds": {"diapir": -1.0}}, "geology.salt.kinds.diapir"),
        ({"salt.kinds": {"dome": 1.0}}, "geology.salt.kinds"),
        ({"layers.v_deep": [3800.0, 4450.0]}, "geology.layers.v_deep"),
        ({"layers.v_seabed": [1000.0, 1800.0]}, "geology.layers.v_seabed"),
        ({"salt.sheet_width": [1.0, 0.5]}, "geology.salt.sheet_width"),
        ({"salt.drag": [0.0, 1.5]}, "geology.salt.drag"),
        ({"faults.count": [0, 20]}, "geology.faults.count"),
        ({"salt.none_probability": 2.0}, "geology.salt.none_probability"),
    ],
)
def test_bad_salt_params_name_the_key(change, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        gen("salt", n=2, p=params(**change))
    assert "\n" not in str(err.value)


def test_docs_describe_every_geology_key_with_its_default():
    # docs/geology.md is the reference for the salt family: every schema key of the geology
    # section appears there (as `section.key`), with the schema's default on its row.
    from pathlib import Path

    from fwi_attn.config import load_schema

    doc = (Path(__file__).resolve().parents[1] / "docs" / "geology.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| `")}
    geology = load_schema()["properties"]["geology"]["properties"]

    def keys(props, prefix=""):
        for name, spec in props.items():
            if "properties" in spec and name != "kinds":
                yield from keys(spec["properties"], f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", spec.get("default")

    for key, default in keys(geology):
        row = next((line for names, line in rows.items() if f"`{key}`" in names), None)
        assert row is not None, f"docs/geology.md has no row for geology.{key}"
        if isinstance(default, list) and key not in ("layers.v_top", "layers.v_bottom"):
            assert f"[{default[0]:g}, {default[1]:g}]" in row or f"[{default[0]}, {default[1]}]" in row, key
        elif isinstance(default, float) and key != "faults.probability":
            assert f"{default:g}" in row.split("|")[2] or f"{default}" in row.split("|")[2], key


def test_1000_small_models_in_one_call():
    # Speed is measured in benchmarks/bench_generate.py; here only that a large batch works.
    v = gen("salt", n=1000)
    assert v.shape == (1000, 70, 70)
    assert np.isfinite(v).all()


# ---------------------------------------------------------------------------------- import


@pytest.fixture
def model():
    return gen("salt", n=1, seed=3, nz=40, nx=60)[0]


def test_load_npy_roundtrip(tmp_path, model):
    path = tmp_path / "m.npy"
    np.save(path, model)
    out = load_velocities(path, 40, 60)
    assert out.dtype == np.float32 and out.shape == (1, 40, 60)  # a 2-D array is one model
    np.testing.assert_array_equal(out[0], model)
    both = np.stack([model, model * 2])
    np.save(tmp_path / "openfwi.npy", both[:, None])  # OpenFWI [n,1,nz,nx]
    np.testing.assert_array_equal(load_velocities(tmp_path / "openfwi.npy", 40, 60), both)
    np.save(tmp_path / "stack.npy", both)  # [n,nz,nx]
    np.testing.assert_array_equal(load_velocities(tmp_path / "stack.npy", 40, 60), both)


def test_load_h5_roundtrip(tmp_path, model):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["velocity"] = np.stack([model, model + 1])  # 3-D: every model
        f["other"] = np.zeros((3, 3))
    np.testing.assert_array_equal(load_velocities(path, 40, 60), np.stack([model, model + 1]))

    path = tmp_path / "only.hdf5"
    with h5py.File(path, "w") as f:
        f["group/vp"] = model
        f["coords"] = np.arange(5.0)
    np.testing.assert_array_equal(load_velocities(path, 40, 60), model[None])


def test_load_segy_roundtrip(tmp_path, model):
    path = tmp_path / "m.sgy"
    save_segy(path, model, DX)
    np.testing.assert_allclose(load_velocities(path, 40, 60), model[None], rtol=1e-6)
    import segyio

    with segyio.open(str(path), ignore_geometry=True) as f:
        assert f.tracecount == 60 and len(f.samples) == 40  # traces = x, samples = depth


def test_load_resamples(tmp_path):
    z = np.linspace(1500.0, 4500.0, 41)
    ramp = np.repeat(z[:, None], 61, axis=1)  # linear in depth, constant in x
    path = tmp_path / "ramp.npy"
    np.save(path, ramp)
    out = load_velocities(path, 81, 121)  # same aspect ratio, twice as fine
    assert out.shape == (1, 81, 121)
    # corner-aligned bilinear resampling keeps a linear ramp exactly (to float32)
    np.testing.assert_allclose(out[0], np.repeat(np.linspace(1500, 4500, 81)[:, None], 121, 1), rtol=1e-6)
    assert load_velocities(path, 21, 60).shape == (1, 21, 60)  # aspect 0.67 -> 0.35: under 2x, allowed
    with pytest.raises(ValueError, match=r"ramp\.npy of 41 x 61 samples.*stretched 3\.89x"):
        load_velocities(path, 81, 31)  # aspect 0.67 -> 2.6: the geology would be stretched


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_velocities(tmp_path / "nope.npy", 10, 10)


def test_load_unknown_extension(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("1 2 3")
    with pytest.raises(ValueError, match=r"model\.txt.*extension"):
        load_velocities(path, 10, 10)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((5, 5), np.nan), "NaN"),
        (np.array([[1500.0, np.inf], [2000.0, 2000.0]]), "inf"),
        (np.array([[1500.0, 0.0], [2000.0, 2000.0]]), "non-positive"),
        (np.array([[1500.0, -3.0], [2000.0, 2000.0]]), "non-positive"),
        (np.arange(1.0, 10.0), "not 2-D"),
        (np.ones((2, 3, 4, 5)), "not 2-D"),
    ],
)
def test_load_bad_values(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=message) as err:
        load_velocities(path, 10, 10)
    assert "bad.npy" in str(err.value)


def test_load_h5_without_usable_dataset(tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.ones((4, 4))
        f["b"] = np.ones((4, 4))
    with pytest.raises(ValueError, match=r"two\.h5.*several 2-D datasets"):
        load_velocities(path, 4, 4)
    path = tmp_path / "none.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.ones(4)
    with pytest.raises(ValueError, match=r"none\.h5.*no 2-D dataset"):
        load_velocities(path, 4, 4)


def test_load_corrupt_files(tmp_path):
    for name in ("junk.h5", "junk.sgy", "junk.npy"):
        path = tmp_path / name
        path.write_bytes(b"not a model at all" * 10)
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            load_velocities(path, 4, 4)
