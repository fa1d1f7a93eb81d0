"""The checks of a whole study that single commands do not need, in one place: the workflow (its
``common.smk``) and ``fwi-attn check-config`` both run :func:`check_study`. Here rather than in
:mod:`fwi_attn.config`, which every stage imports, because they read the file system and the
test-set code."""
from __future__ import annotations

from fwi_attn.config import ConfigError
from fwi_attn.data.testset import TestSetError, model_files
from fwi_attn.layout import test_set_names


def check_study(cfg) -> None:
    """The checks of a whole study that ``load_config`` leaves out because single commands do not
    need them; the workflow and ``fwi-attn check-config`` both run them (one list, one place):

    * ``study.reference`` is one of ``study.variants`` (the report ranks variants against it);
    * test-set names are unique, also against the family-transfer sets' ``transfer-<family>``;
    * every ``study.test_sets`` path exists and holds model files (relative paths are relative to
      the current folder, the workflow's working directory).

    Raises:
        ConfigError: naming the key, the value at fault and what to do.
    """
    source = getattr(cfg, "source", None) or "config"
    study = cfg.study
    variants = list(study.variants)
    if study.reference not in variants:
        raise ConfigError(f"{source}: study.reference '{study.reference}' is not one of study.variants "
                          f"({', '.join(variants)}); the report ranks variants against it: add it to "
                          f"study.variants or choose one of them")
    names = test_set_names(study)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{source}: study.test_sets names must be unique and differ from the family-transfer "
                          f"sets' ({', '.join(names)}): {', '.join(repeated)} is given twice; rename it")
    for entry in study.test_sets or []:
        paths = [entry.path] if isinstance(entry.path, str) else list(entry.path)
        try:
            model_files(paths)
        except TestSetError as e:
            raise ConfigError(f"{source}: study.test_sets {entry.name}: {e}") from None
