from sandbox_selfmanaged import provider


def test_ragflow_config_upgraded() -> None:
    raw = {"endpoint": "http://10.0.0.5:9385", "timeout": 30, "max_retries": 3, "pool_size": 10}
    config, notes = provider.sandbox_upgrade_config(config=raw, source="ragflow")
    assert config == {"endpoints": ["http://10.0.0.5:9385"], "request_timeout": 30, "retries": 3}
    assert any(note.startswith("pool_size: dropped") for note in notes)
    assert provider.sandbox_upgrade_config(config=config, source="0.1") is None
