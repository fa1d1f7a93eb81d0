"""Config loading: defaults, presets, and a clear error for every kind of bad input."""
from __future__ import annotations

import re
import warnings

import pytest
import yaml

from fwi_attn.config import PRESETS_DIR, Config, ConfigError, load_config, validate_section
from fwi_attn.data.survey import Survey, SurveyError, SurveyWarning


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
def test_presets_are_valid_and_stable(preset):
    cfg = load_config(preset)
    survey = Survey.from_config(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SurveyWarning)  # presets must not be marginal
        survey.check(cfg.geology.vmin, cfg.geology.vmax)


def test_openfwi_preset_matches_the_published_acquisition():
    s = Survey.from_config(load_config("openfwi"))
    # OpenFWI's grid, wavelet and 1000 samples of 1 ms: its 1 s record is kept knowingly.
    assert (s.nz, s.nx, s.dx, s.nt, s.dt, s.freq) == (70, 70, 10.0, 1000, 0.001, 15.0)
    assert s.n_shots == 5 and s.n_receivers == 70
    assert (s.source_xz[:, 0] / s.dx).round().tolist() == [0, 17, 34, 52, 69]
    assert set(s.receiver_xz[:, 1]) == {10.0}


def test_defaults_fill_nested_sections():
    cfg = load_config({"datasets": {"x": {"family": "flatvel"}}, "study": {"dataset": "x"}})
    assert cfg.datasets["x"].samples.train == 256
    assert cfg.geology.salt.velocity == (4400.0, 4500.0)
    assert cfg.to_dict()["survey"]["accuracy"] == 8


def test_sections_are_read_only():
    cfg = load_config()
    with pytest.raises(AttributeError):
        cfg.survey.dx = 5.0
    with pytest.raises(AttributeError, match="no key 'dz'"):
        _ = cfg.survey.dz


BAD = [
    ({"survey": {"dxx": 1}}, r"unknown key\(s\) 'dxx' in survey; allowed keys: accuracy"),
    ({"surveys": {}}, r"unknown key\(s\) 'surveys' in the top level"),
    ({"survey": {"dx": "ten"}}, r"'survey.dx': 'ten' is not of type 'number'"),
    ({"survey": {"dx": 0}}, r"'survey.dx': 0 is less than or equal to the minimum of 0"),
    ({"survey": {"accuracy": 3}}, r"'survey.accuracy'.*allowed values: 2, 4, 6, 8"),
    ({"geology": {"vmin": -100}}, r"'geology.vmin'"),
    ({"geology": {"vmin": 4600}}, r"geology.vmin \(4600\) must be below geology.vmax"),
    ({"geology": {"salt": {"velocity": [4600, 4700]}}}, r"geology.salt.velocity .* outside"),
    ({"geology": {"salt": {"width": [0.5, 0.2]}}}, r"geology.salt.width is \[0.5, 0.2\]"),
    ({"geology": {"layers": {"count": [4, 200]}}}, r"'geology.layers.count.1': 200 is greater than the maximum of 100"),
    ({"survey": {"source_x": [0, 5000]}}, r"survey.source_x\[1\] = 5000 m lies outside the grid"),
    ({"survey": {"receiver_depth": 5000}}, r"survey.receiver_depth = 5000 m lies below the grid"),
    ({"survey": {"nt": 200}}, r"survey.nt = 200 \(record nt\*dt = 0.2 s\) ends before the reflection.*"
                              r"raise survey.nt to at least \d+"),
    ({"survey": {"free_surface": True, "source_depth": 0}}, r"survey.source_depth = 0 m is on the free surface"),
    ({"study": {"dataset": "nope"}}, r"study.dataset 'nope' is not a key of datasets"),
    ({"study": {"variants": ["transformer"]}}, r"allowed values: none, se, cbam"),
    ({"datasets": {"salt": {"family": "dome"}}}, r"'datasets.salt.family'.*allowed values: salt, flatvel"),
    ({"datasets": {"salt": {"samples": {"train": 0}}}}, r"'datasets.salt.samples.train'"),
]


def test_a_record_too_short_for_the_slowest_salt_trend_is_refused():
    """The default preset at its earlier 2 ms sampling: 0.64 s, while the reflection from the bottom at
    630 m offset through the slowest compaction trend arrives at ~0.93 s (wavelet peak included)."""
    raw = yaml.safe_load((PRESETS_DIR / "default.yaml").read_text())
    raw["survey"]["dt"] = 0.002
    with pytest.raises(ConfigError, match=r"survey.nt = 320 \(record nt\*dt = 0.64 s\) ends before the reflection "
                                          r".*slowest salt profile.*arrives at 0.929 s.*at least 465"):
        load_config(raw)
    raw["survey"]["nt"] = 465
    assert load_config(raw).survey.nt == 465


def test_the_record_check_uses_the_slowest_draw_of_the_configured_ranges():
    from fwi_attn.config.record import reflection_time

    raw = yaml.safe_load((PRESETS_DIR / "default.yaml").read_text())
    cfg = load_config(raw)
    s, g = cfg.survey.to_dict(), cfg.geology.to_dict()
    t_salt = reflection_time(s, g, "salt")[0]
    slower = {**g, "layers": {**g["layers"], "v_seabed": [1500.0, 1800.0], "compaction": [1500.0, 5000.0]}}
    assert reflection_time(s, slower, "salt")[0] > t_salt
    # A constant velocity gives the straight-ray time: sqrt(offset^2 + (2 depth)^2) / v.
    flat = {**g, "layers": {**g["layers"], "v_seabed": [2000.0, 2000.0], "v_deep": [2000.0, 2000.0]}}
    t, offset, v_rms = reflection_time(s, flat, "salt")
    assert v_rms == pytest.approx(2000.0)
    assert t == pytest.approx(s["peak_time"] + (offset ** 2 + (2 * 620.0) ** 2) ** 0.5 / 2000.0)
    # A deeper water layer (1500 m/s) than sediments at the sea floor slows the draw.
    wet = {**g, "water": {**g["water"], "probability": 0.5, "depth": [0.0, 300.0]}}
    assert reflection_time(s, wet, "salt")[0] > t_salt


def test_families_drawn_for_transfer_sets_are_held_to_the_record_too():
    raw = yaml.safe_load((PRESETS_DIR / "default.yaml").read_text())
    raw["study"]["transfer_families"] = ["curvefault"]
    with pytest.raises(ConfigError, match=r"survey.nt = 320 .*slowest curvefault profile"):
        load_config(raw)


def test_range_keys_come_from_the_schema():
    from fwi_attn.config import load_schema, range_keys

    keys = range_keys("geology")
    assert len(keys) == 23 and keys["layers.count"] == keys["salt.bodies"] == keys["faults.count"] == "count"
    assert keys["salt.velocity"] == "real" and "salt.roughness" not in keys
    defaults = load_schema()["properties"]["geology"]["properties"]
    for key in keys:
        group, name = key.split(".")
        assert len(defaults[group]["properties"][name]["default"]) == 2


@pytest.mark.parametrize("study, message", [
    ({"reference": "cbam"}, r"study.reference 'cbam' is not one of study.variants \(none, se\)"),
    ({"test_sets": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]}, r"names must be unique.*: a is given twice"),
], ids=["reference", "repeated-set-name"])
def test_load_config_refuses_what_every_command_needs(tiny_dict, study, message):
    """Checked by load_config, so that a single command (not only the workflow) refuses it."""
    tiny_dict["study"].update(study)
    with pytest.raises(ConfigError, match=message):
        load_config(tiny_dict)


def test_the_variant_catalogue_schema_and_registry_agree():
    from fwi_attn.catalogue import CATALOGUE, CONTROLS, study_variants
    from fwi_attn.config import load_schema
    from fwi_attn.nn.models import list_models

    study = load_schema()["properties"]["study"]["properties"]
    assert study["variants"]["items"]["enum"] == study["reference"]["enum"] == list(study_variants())
    assert [v.name for v in CATALOGUE] == list_models()
    assert {v.name for v in CATALOGUE if v.kind == "control"} == set(CONTROLS)
    assert {v.kind for v in CATALOGUE} == {"attention", "baseline", "control"}
    assert all(v.description and v.train_cost >= 1.0 for v in CATALOGUE)


@pytest.mark.parametrize("raw, message", BAD)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        load_config(raw)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("survey: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"survey": {"nz": -1}}))
    with pytest.raises(ConfigError, match=r"wrong.yaml: config key 'survey.nz'"):
        load_config(wrong)


def test_survey_checks_dispersion_aliasing_and_cfl():
    base = load_config()
    survey = Survey.from_config(base)
    with pytest.raises(SurveyError, match="grid dispersion: only"):
        Survey(**{**survey.__dict__, "dx": 30.0}).check(1500, 4500)
    with pytest.warns(SurveyWarning, match="marginal grid dispersion"):
        Survey(**{**survey.__dict__, "accuracy": 4}).check(1500, 4500)
    with pytest.raises(SurveyError, match="aliases the wavelet"):
        Survey(**{**survey.__dict__, "dt": 0.02}).check(1500, 4500)
    with pytest.raises(SurveyError, match="exceeds max_vel 4500 m/s"):
        survey.check(1500, 5200)
    assert survey.inner_steps() >= 1
    assert Survey(**{**survey.__dict__, "dt": 0.004}).inner_steps() > 1


@pytest.mark.parametrize("raw,key", [
    ({"survey": {"freq": float("nan")}}, "survey.freq"),
    ({"train": {"lr": float("inf")}}, "train.lr"),
    ({"survey": {"source_x": [0.0, float("nan")]}}, "survey.source_x[1]"),
], ids=["nan-freq", "inf-lr", "nan-in-list"])
def test_non_finite_values_are_refused_naming_the_key(raw, key):
    with pytest.raises(ConfigError, match=re.escape(key) + ".*finite"):
        load_config(raw)


def test_integer_keys_refuse_floats():
    # JSON Schema counts 0.0 as an integer; a seed of 0.0 would name a folder seed0.0.
    with pytest.raises(ConfigError, match="study.seeds.0.*integer"):
        load_config({"study": {"seeds": [0.0]}})
    with pytest.raises(ConfigError, match="datasets.salt.seed"):
        load_config({"datasets": {"salt": {"family": "salt", "seed": 2**70}}})


def test_co_located_shots_are_refused():
    with pytest.raises(ConfigError, match="survey.n_shots = 1000 puts several sources in one grid cell.*at most 64"):
        load_config({"survey": {"n_shots": 1000}})


@pytest.mark.parametrize("content,match", [
    (b"", "config file is empty"),
    (b"\xff\xfe", "not UTF-8"),
    (b"survey: [1, 2", "not valid YAML"),
], ids=["empty", "non-utf8", "bad-yaml"])
def test_unreadable_config_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*" + match):
        load_config(path)


def test_a_folder_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_inline_config_is_the_same_as_its_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 3}\n")
    assert load_config('{"train": {"epochs": 3}}').to_dict() == load_config(path).to_dict()


PRESETS = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS + ["<defaults>"])
def test_load_config_is_idempotent(preset):
    # Shards and checkpoints store to_dict() and compare it with a fresh load: it must be a fixed point.
    cfg = load_config(None if preset == "<defaults>" else preset)
    again = load_config(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()
    assert load_config(again.dumps()).dumps() == cfg.dumps()  # through JSON, as stored in a shard


def test_peak_time_is_resolved_once_and_is_the_surveys():
    cfg = load_config({"survey": {"freq": 12.0}})
    assert cfg.survey.peak_time == 1.5 / 12.0  # recorded in the resolved config
    assert Survey.from_config(cfg).peak_time == cfg.survey.peak_time
    given = load_config({"survey": {"peak_time": 0.15}})
    assert given.survey.peak_time == 0.15 and Survey.from_config(given).peak_time == 0.15
    # The survey reads the resolved value, it does not compute its own: an unresolved one is refused.
    raw = cfg.to_dict()
    raw["survey"]["peak_time"] = None
    with pytest.raises(SurveyError, match="survey.peak_time is null.*load_config"):
        Survey.from_config(Config(raw))


def test_validate_section_matches_load_config():
    full = load_config().to_dict()
    assert validate_section("geology", {}) == full["geology"]
    assert validate_section("survey", None) == full["survey"]  # peak_time resolved here too
    assert validate_section("survey", {"freq": 10.0})["peak_time"] == 0.15
    with pytest.raises(ConfigError, match=r"lib: config key 'geology.salt.roughness': 2 is greater"):
        validate_section("geology", {"salt": {"roughness": 2}}, source="lib")
    with pytest.raises(ConfigError, match=r"config key\(s\) 'geology.vmax' must be finite"):
        validate_section("geology", {"vmax": float("nan")})
    with pytest.raises(ConfigError, match=r"lib: unknown config section 'geolgy'; sections: study, survey"):
        validate_section("geolgy", {}, source="lib")


@pytest.mark.parametrize("study, message", [
    ({"reference": "cbam"}, "study.reference 'cbam' is not one of study.variants"),
    ({"test_sets": [{"name": "bp", "path": "no-such-models"}]}, "study.test_sets bp: no-such-models: no such model"),
    ({"test_sets": [{"name": "transfer-flatfault", "path": "."}], "transfer_families": ["flatfault"]},
     "study.test_sets names must be unique"),
], ids=["reference", "missing-test-set-folder", "repeated-set-name"])
def test_check_config_runs_the_workflows_study_checks(tmp_path, monkeypatch, capsys, tiny_dict, study, message):
    """`fwi-attn check-config` refuses what the workflow refuses (one list of checks, check_study)."""
    from fwi_attn.cli import main

    monkeypatch.chdir(tmp_path)
    tiny_dict["study"].update(study)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_dict))
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fwi-attn check-config: error: ") and "Traceback" not in err, err
    assert str(path) in err and message in err, err


def test_check_config_accepts_a_study_the_workflow_accepts(tmp_path, monkeypatch, capsys, tiny_dict):
    from fwi_attn.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.npy").write_bytes(b"")  # listed only, not read
    tiny_dict["study"].update(test_sets=[{"name": "bp", "path": "models"}], transfer_families=["flatfault"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_dict))
    assert main(["check-config", "--config", str(path)]) == 0, capsys.readouterr().err
    assert "valid" in capsys.readouterr().out


def test_a_short_record_is_refused_unless_allowed_knowingly():
    """OpenFWI's 1 s record misses the slowest draw's deepest reflection: refused by default, naming
    survey.nt; accepted only with survey.record_check: allow_short (the openfwi preset)."""
    with pytest.raises(ConfigError, match=r"survey\.nt = 1000 .* ends before the reflection .*record_check: allow_short"):
        load_config({**yaml.safe_load((PRESETS_DIR / "openfwi.yaml").read_text()),
                     "survey": {**yaml.safe_load((PRESETS_DIR / "openfwi.yaml").read_text())["survey"],
                                "record_check": "refuse"}})
    assert load_config("openfwi").survey.record_check == "allow_short"


def test_the_record_check_policy_is_not_part_of_the_data():
    """Data simulated under survey.record_check: allow_short is the same data under refuse: a shard
    or checkpoint is not refused for it."""
    from fwi_attn.config import recorded_differences

    cfg = load_config("default")
    made = cfg.to_dict()
    made["survey"]["record_check"] = "allow_short"
    assert recorded_differences(made, cfg, ("survey",)) == []
    made["survey"]["nz"] = 32
    assert recorded_differences(made, cfg, ("survey",))
