"""Three config files changed together (see run.sh): untorn.transaction() makes the three
changes visible and durable together, or none of them.

What it replaces:
    for name, text in new.items():
        with atomicwrites.atomic_write(name, overwrite=True) as f: f.write(text)
    # each file atomic, but a crash between two leaves them disagreeing
"""

import os
import tempfile

import untorn


def main() -> None:
    os.chdir(tempfile.mkdtemp())
    untorn.write_json("app.json", {"db_port": 5432})
    untorn.write_yaml("db.yaml", {"port": 5432})
    untorn.write_toml("cache.toml", {"db_port": 5432})

    with untorn.transaction() as tx:
        tx.write_json("app.json", {"db_port": 6432})
        tx.write_yaml("db.yaml", {"port": 6432})
        tx.write_toml("cache.toml", {"db_port": 6432})
    assert untorn.read_yaml("db.yaml") == {"port": 6432}

    # An exception before the end of the block: nothing changes.
    try:
        with untorn.transaction() as tx:
            tx.write_json("app.json", {"db_port": 7432})
            tx.write_yaml("db.yaml", {"port": 7432})
            raise RuntimeError("the new cache settings are not ready")
    except RuntimeError:
        pass
    assert untorn.read_json("app.json") == {"db_port": 6432}
    assert untorn.read_toml("cache.toml") == {"db_port": 6432}
    print("ok: three files changed together, and not at all when the change fails")


if __name__ == "__main__":
    main()
