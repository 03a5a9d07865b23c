from sandbox_aliyun import provider


def test_ragflow_config_upgraded() -> None:
    raw = {
        "access_key_id": "id", "access_key_secret": "s3cret", "account_id": "1",
        "region": "cn-hangzhou", "template_name": "", "timeout": 45,
    }
    config, notes = provider.sandbox_upgrade_config(config=raw, source="ragflow")
    assert "template_name" not in config and config["timeout"] == 30
    assert config["access_key_secret"] == "s3cret"
    assert any(note.startswith("template_name:") for note in notes)
    assert not any("s3cret" in note for note in notes)
    assert provider.sandbox_upgrade_config(config=config, source="0.1") is None
