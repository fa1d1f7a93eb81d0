"""The checks of a whole study that read the file system, in one place: the workflow (its
``common.smk``) and ``fwi-attn check-config`` both run :func:`check_study`. Here rather than in
:mod:`fwi_attn.config`, which every stage imports, because they read the file system and the
test-set code; every check of the config's values alone (the reference among the variants,
unique test-set names, a long enough record) is :func:`fwi_attn.config.load_config`'s."""
from __future__ import annotations

from fwi_attn.config import ConfigError
from fwi_attn.data.testset import TestSetError, model_files


def check_study(cfg) -> None:
    """What a loaded config (``load_config``) cannot know alone: every ``study.test_sets`` path
    exists and holds model files (relative paths are relative to the current folder, the
    workflow's working directory).

    Raises:
        ConfigError: naming the key, the value at fault and what to do.
    """
    source = getattr(cfg, "source", None) or "config"
    for entry in cfg.study.test_sets or []:
        paths = [entry.path] if isinstance(entry.path, str) else list(entry.path)
        try:
            model_files(paths)
        except TestSetError as e:
            raise ConfigError(f"{source}: study.test_sets {entry.name}: {e}") from None
