"""The script boundary: configs read (mmengine ``Config`` + ``--cfg-options``) and checked against the shipped ones
(:mod:`.loading`), typed start-up checks and the one-line-error wrapper every script runs in (:mod:`.checks`), a
training run's resolved config written and read back as data (:mod:`.run_config`)."""
from textssr.config.loading import (ConfigError, schema_keys, unknown_key_error, load_config, require_keys,
                                    require_path, check_choice, ConfigOptionsAction, option_value, add_config_args,
                                    parse_config)

__all__ = ['ConfigError', 'schema_keys', 'unknown_key_error', 'load_config', 'require_keys', 'require_path',
           'check_choice', 'ConfigOptionsAction', 'option_value', 'add_config_args', 'parse_config']
