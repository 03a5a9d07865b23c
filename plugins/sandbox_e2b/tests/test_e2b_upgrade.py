from sandbox_e2b import provider


def test_ragflow_config_upgraded() -> None:
    raw = {"api_key": "e2b_sk_fake", "region": "eu", "timeout": 60}
    config, notes = provider.sandbox_upgrade_config(config=raw, source="ragflow")
    assert config == {"api_key": "e2b_sk_fake", "request_timeout": 60}
    assert any(note.startswith("region: dropped") for note in notes)
    assert not any("e2b_sk_fake" in note for note in notes)
    assert provider.sandbox_upgrade_config(config=config, source="0.1") is None
