"""Hostile inputs, code execution and configs: a planted pickle, ``$(...)`` in every config string
and key, config names and pathological formulas. Each case asserts a one-line error naming the file
and the fix, nothing left behind, or the right behaviour (shared pieces: tests/hostile_common.py)."""

from __future__ import annotations

from hostile_common import *  # noqa: F401,F403 - shared imports, fixtures (sim, data_file, finished_run), helpers


# -- code execution ----------------------------------------------------------------------------


def test_no_weights_only_false_anywhere():
    """Every torch.load of the project, its baselines and benchmarks passes weights_only=True."""
    offenders, unsafe = [], "weights_only=" + "False"
    for path in [*REPO.glob("lmmvae/**/*.py"), *REPO.glob("benchmarks/**/*.py"), *REPO.glob("tests/*.py")]:
        text = path.read_text()
        if unsafe in text:
            offenders.append(str(path))
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call and path.name != "test_hostile.py":
                offenders.append(f"{path}: {call}")
    assert not offenders


def test_planted_pickle_in_checkpoint_never_runs(data_file, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "MARKER"
    torch.save({"model": Payload(marker)}, run / "checkpoint.pt")
    # the payload is live: unpickling the checkpoint's data.pkl (what an unsafe load does) runs it
    import zipfile

    with zipfile.ZipFile(run / "checkpoint.pt") as z:
        pickle.loads(z.read(next(n for n in z.namelist() if n.endswith("data.pkl"))))
    assert marker.exists()
    marker.unlink()

    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", run, "--resume",
                   "--quiet"], capsys)
    assert rc == 0, err
    assert not marker.exists()
    warning = [ln for ln in err.splitlines() if ln.startswith("lmmvae: warning:")]
    assert len(warning) == 1 and "checkpoint.pt" in warning[0] and "discarded" in warning[0]
    assert (run / "model.pt").exists()


def test_planted_pickle_in_model_file_is_refused(finished_run, data_file, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    marker = tmp_path / "MARKER"
    with open(run / "model.pt", "wb") as f:
        pickle.dump(Payload(marker), f)
    rc, err = cli(["evaluate", "--run", run, "--data", data_file, "--out", tmp_path / "m.json"], capsys)
    one_line_error(rc, err, "model.pt", "unreadable", "retrain")
    assert not marker.exists() and not (tmp_path / "m.json").exists()


PAYLOAD = "$(touch MARKER)"


def _strings_and_keys(node, path=()):
    """Every (path, kind) of a string value or a mapping key in a config tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,), "key"
            yield from _strings_and_keys(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings_and_keys(value, path + (i,))
    elif isinstance(node, str):
        yield path, "value"


def _with_payload(config, path, kind):
    import copy

    config = copy.deepcopy(config)
    node = config
    for step in path[:-1]:
        node = node[step]
    last = path[-1]
    if kind == "key":
        node = {(f"{k}{PAYLOAD}" if k == last else k): v for k, v in node.items()} if isinstance(node, dict) else node
        parent = config
        for step in path[:-2]:
            parent = parent[step]
        if len(path) == 1:
            return node
        parent[path[-2]] = node
    else:
        node[last] = f"{node[last]}{PAYLOAD}"
    return config


def _unquoted(command: str, needle: str) -> list[int]:
    """Offsets of ``needle`` in ``command`` outside single quotes (where a shell would expand it)."""
    hits, quote, i = [], None, 0
    while i < len(command):
        ch = command[i]
        if quote is None and command.startswith(needle, i):
            hits.append(i)
        if quote == "'":
            quote = None if ch == "'" else quote
        elif quote == '"':
            if ch == "\\":
                i += 1
            elif ch == '"':
                quote = None
            elif command.startswith(needle, i):
                hits.append(i)  # $(...) runs inside double quotes too
        elif ch == "\\":
            i += 1
        elif ch in "'\"":
            quote = ch
        i += 1
    return hits


def test_no_config_string_or_key_reaches_a_shell_unquoted(tmp_path):
    """``$(touch MARKER)`` in every string and key of the tiny config: the schema refuses it (names),
    or the dry run prints it only inside single quotes; the printed commands, run by bash with a
    stub ``python``, never create the marker."""
    from lmmvae.reporting.experiments import load_plan

    base = yaml.safe_load(TINY.read_text())
    admitted, refused = [], []
    for path, kind in _strings_and_keys(base):
        try:
            load_plan(_with_payload(base, path, kind), SCHEMA)
        except ConfigError as err:
            assert "\n" not in str(err)
            refused.append((path, kind))
        else:
            admitted.append((path, kind))
    assert refused and admitted  # names are constrained; free text (titles, labels, formulas) is not
    assert all(kind == "value" for _, kind in admitted)  # no key reaches the workflow with a payload

    config = base
    for path, kind in admitted:
        config = _with_payload(config, path, kind)
    load_plan(config, SCHEMA)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    workdir = tmp_path / "work"
    workdir.mkdir()
    snakemake = str(Path(sys.executable).parent / "snakemake")
    done = subprocess.run([snakemake, "-n", "--printshellcmds", "--cores", "1", "--directory", str(workdir),
                           "--configfile", str(configfile)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    commands = [ln.split("Shell command: ", 1)[1] for ln in (done.stdout + done.stderr).splitlines()
                if "Shell command: " in ln]
    assert commands
    assert any(PAYLOAD in c for c in commands)  # the payloads do reach the commands ...
    for command in commands:
        assert not _unquoted(command, PAYLOAD), command  # ... but only quoted

    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "python").write_text("#!/bin/sh\nexit 0\n")
    (stub / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, timeout=30)
    assert not list(workdir.rglob("MARKER")) and not (REPO / "MARKER").exists()



# -- configs and formulas ----------------------------------------------------------------------


@pytest.mark.parametrize("edit,fragment", [
    (lambda c: c["datasets"]["health_mnist"]["options"].update({"x; touch M": 1}), "options: name 'x; touch M'"),
    (lambda c: c["datasets"]["physionet"]["synthetic"].update({"$(id)": 1}), "synthetic: name '$(id)'"),
    (lambda c: c["experiments"]["rotating_mnist_basis"]["figures"]["latent"].update(covariate="a`id`"),
     "covariate: name 'a`id`'"),
    (lambda c: c["experiments"]["health_mnist"]["models"].update({"m$(id)": {"variant": "vae"}}), "models: name"),
    (lambda c: c["experiments"]["rotating_mnist_basis"]["sweep"].update(values=["1;id"]), "'1;id'"),
])
def test_config_names_are_constrained(edit, fragment):
    from lmmvae.reporting.experiments import load_plan

    config = yaml.safe_load(TINY.read_text())
    edit(config)
    with pytest.raises(ConfigError) as err:
        load_plan(config, SCHEMA)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("formula,fragment", [
    ("fourier(t, " + "(" * 5000 + "1" + ")" * 5000 + ", period=1)", "characters; at most"),
    ("fourier(t, " + "(" * 100 + "1" + ")" * 100 + ", period=1)", "nested 101 deep"),
    ("fourier(t, " + "- " * 2999 + "1, period=1)", "must be >= 1"),  # no RecursionError
    ("a*b*c*d*e*f*g*h*i*j*k", "more than 10 factors"),
    ("fourier(t, 1e9, period=1)", "must be <= 10000"),
    ("rff(t, 1e12, 1)", "must be <= 10000"),
    ("poly(t, 1000)", "must be <= 20"),
    ("fourier(t, 1e400, period=1)", "must be an integer"),
])
def test_pathological_formulas_are_one_line(formula, fragment):
    with pytest.raises(DesignError) as err:
        parse_formula(formula)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_too_many_design_columns_is_one_line():
    covs = {"a": Covariate(np.arange(400) % 400, "categorical"), "b": Covariate(np.arange(400) % 300, "categorical")}
    with pytest.raises(DesignError, match="columns; at most"):
        Design("~ C(a):C(b)").fit(covs)


def test_bad_formula_at_fit_is_one_line_and_leaves_nothing(data_file, tmp_path, capsys):
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path, design="poly(time, 99)"),
                   "--out", tmp_path / "run"], capsys)
    one_line_error(rc, err, "poly() argument degree must be <= 20")
    assert not (tmp_path / "run").exists()
