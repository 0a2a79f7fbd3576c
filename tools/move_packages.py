"""Move the flat modules of lmmvae/ into sub-packages that show the architecture, in one scripted step.

Run at the repository root on a clean git tree:

    python tools/move_packages.py            # git mv + rewrite every reference; prints what it did
    python tools/move_packages.py --check    # only the preflight: unmapped / missing modules

What it does, in order:

1. Preflight. The tree must be clean (``git status --porcelain`` empty). Every module and package
   directly under ``lmmvae/`` must be named in ``MOVES`` or ``STAY`` below; otherwise it stops and
   lists the names (a module added since this table was written needs a line here). A second run
   finds the moves done and stops without touching anything.
2. ``git mv`` each entry of ``MOVES`` (modules, and the packages ``datasets``, ``design``,
   ``priors`` with their contents), and writes each new package's ``__init__.py`` (a docstring only:
   what the package is for and which packages it imports; no re-exports, imports stay explicit).
3. Rewrites every tracked text file (code, tests, benchmarks, baselines, workflow, docs, README,
   pyproject's import contracts): dotted names (``lmmvae.train.Trainer``, ``"lmmvae.train.X"`` in
   monkeypatch strings, ``import lmmvae.train``), ``from lmmvae import a, b`` (split per new
   package, ``as`` kept where a module was renamed) and paths (``lmmvae/train.py``,
   ``lmmvae/datasets/``). One pass with one regular expression, so a new name is never rewritten
   again. Then appends the package contracts (``PACKAGE_CONTRACTS``) to pyproject.toml.
4. Prints the counts per kind of rewrite and per file group, and every ``lmmvae.<name>`` or
   ``lmmvae/<path>`` left that names no module or file (an old name the rewrite missed). It does not
   commit: review ``git status`` / ``git diff --stat``, run ``lint-imports`` and the tests, then
   ``git add -A lmmvae`` plus the rewritten files and commit.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

# old dotted name (relative to lmmvae) -> new dotted name (relative to lmmvae)
MOVES: dict[str, str] = {
    # the data format and the data sets
    "h5": "data.h5", "longitudinal": "data.longitudinal", "levels": "data.levels", "tables": "data.tables",
    "loader": "data.loader", "batch": "data.batch", "datasets": "data.sets",
    # what the model is: design, priors, networks, likelihoods, the registries
    "design": "model.design", "priors": "model.priors", "networks": "model.networks",
    "likelihoods": "model.likelihoods", "model": "model.latent",
    "variants": "model.variants",
    "objective_kinds": "model.objective_kinds",  # torch-free table of objectives; the priors read it
    # building and fitting it: the config checks, the objectives, the trainer, the machine
    "checks": "training.checks", "assemble": "training.assemble", "objectives": "training.objectives",
    "train": "training.train", "runtime": "training.runtime", "gpu_slots": "training.gpu_slots",
    # the answers of a fitted model
    "predict": "answers.predict", "intervals": "answers.intervals", "effects": "answers.effects",
    "contrast": "answers.contrast", "summary": "answers.summary", "evaluate": "answers.evaluate",
    "metrics": "answers.metrics", "diagnostics": "answers.diagnostics",
    # the classical family
    "classical": "classical.family", "classical_fit": "classical.fit", "classical_summary": "classical.summary",
    "mixedlm": "classical.mixedlm",
    # run directories and the files around them
    "rundir": "runs.rundir", "runlock": "runs.runlock", "paths": "runs.paths", "yamlio": "runs.yamlio",
}
# stay at the top of lmmvae: the front doors, the config record, and the modules every package uses
# (errors, atomic writes, progress bars, the generic name registry: each imports at most errors)
STAY = {"__init__", "__main__", "api", "config", "errors", "fitted", "atomic", "progress", "registry", "cli", "reporting"}

PACKAGES: dict[str, str] = {
    "data": """The data format and the data sets (docs/data_format.md): the in-memory record and its
HDF5 file, levels of categorical covariates, CSV tables, tensors and batches for training, and the four
data sets of the benchmark with their generators (``sets``).

Imports from lmmvae: the top-level errors/atomic/progress/registry and nothing else, except
``sets.show`` (plots of examples), which uses ``lmmvae.reporting.subjects``.""",
    "model": """What an LMM-VAE is (SPEC 1-3, 5, 7): the design of covariates (``design``), the latent
priors (``priors``), the encoder/decoder networks, the likelihoods, the latent-variable model that joins
them, and the registries a config names them from (``variants``, ``objective_kinds``: what each
objective implies, torch-free; the losses are ``training.objectives``).

Imports from lmmvae: ``data`` and the top-level errors/registry; nothing that trains, answers or runs.""",
    "training": """Building a model from a config and fitting it (SPEC 2.3, 3.3, 4, 7.1): the config
checks against the registries, assembling networks x likelihood x prior, the objectives (ELBO, GSNN),
the trainer with its checkpoints, and the machine (device, threads, GPU slots).

Imports from lmmvae: ``model``, ``data``, ``runs``, the top-level config/errors/atomic/progress/
registry, and ``answers.metrics`` (``objectives``: the log-mean-exp of importance weights).""",
    "answers": """The answers of a fitted model (SPEC 2.4, 3.4, 6): predictions and their Monte Carlo
estimates, intervals, covariate effects, contrasts, the summary, the metrics and the evaluation, the
diagnostics of posterior collapse.

Imports from lmmvae: ``training`` (config checks), ``model``, ``data``, the top-level errors/atomic/
progress, and two edges into its neighbours: ``classical.mixedlm`` (contrast: the closed-form
interval of a mixed model) and ``reporting.figures`` / ``reporting.curves`` (effects, summary).""",
    "classical": """The classical family of the benchmark: a linear mixed model per output feature
(``mixedlm``) and the feature mean, fitted, saved, loaded and summarised like the neural models
(``family`` registers the variants and their fit/load hooks).

Imports from lmmvae: ``answers``, ``training`` (config checks), ``model``, ``data``, ``runs`` and the
top-level errors.""",
    "runs": """Run directories and the files around them: the layout of a run, saving and loading a
fitted model, the lock one run holds, path checks, and the YAML reader.

Imports from lmmvae: ``model.design`` and ``data.h5`` (a run's design and covariates) and the
top-level errors/atomic; nothing that trains or answers.""",
}

# Appended to pyproject.toml: each package imports none of the packages above it (the architecture
# of the folders). ``ignore`` lists the edges the docstrings above name.
PACKAGE_CONTRACTS = [
    ("data", ["model", "training", "answers", "classical", "runs", "cli", "api"], []),
    ("model", ["training", "answers", "classical", "runs", "reporting", "cli", "api"], []),
    ("runs", ["training", "answers", "classical", "reporting", "cli", "api"], []),
    ("training", ["answers", "classical", "reporting", "cli", "api"],
     ["lmmvae.training.objectives -> lmmvae.answers.metrics"]),
    ("answers", ["cli", "api"], []),
    ("classical", ["cli", "api"], []),  # reporting: through answers.effects (its plots)
]

SKIP_SUFFIXES = {".png", ".pdf", ".h5", ".pt", ".gz", ".zip", ".jpg", ".npz", ".npy"}
SELF = "tools/move_packages.py"


def git(*args: str, capture: bool = True) -> str:
    return subprocess.run(["git", *args], check=True, text=True, capture_output=capture).stdout


def fail(message: str) -> None:
    print(f"move_packages: {message}", file=sys.stderr)
    raise SystemExit(1)


def top_level_names(root: Path) -> set[str]:
    """Modules (stem) and packages directly under lmmvae/, tracked or not (not caches)."""
    names = set()
    for path in (root / "lmmvae").iterdir():
        if path.suffix == ".py":
            names.add(path.stem)
        elif path.is_dir() and (path / "__init__.py").exists():
            names.add(path.name)
    return names


def preflight(root: Path) -> bool:
    """True if the move is still to do; False if it was done already; fails on anything else."""
    names = top_level_names(root)
    new_packages = [p for p in PACKAGES if (root / "lmmvae" / p / "__init__.py").exists()]
    old_left = sorted(set(MOVES) & names - set(PACKAGES)) + sorted(
        p for p in ("model", "classical") if (root / "lmmvae" / f"{p}.py").exists())
    if len(new_packages) == len(PACKAGES) and not old_left:
        return False
    if new_packages:
        fail(f"partly applied: new packages {new_packages} exist, old modules {old_left} too")
    unmapped = sorted(names - set(MOVES) - STAY)
    if unmapped:
        fail("lmmvae modules not in MOVES or STAY (add a line to the table): " + ", ".join(unmapped))
    missing = sorted(set(MOVES) - names)
    if missing:
        fail("modules in MOVES that lmmvae/ no longer has: " + ", ".join(missing))
    relative = [str(path.relative_to(root)) for path in sorted((root / "lmmvae").rglob("*.py"))
                if re.search(r"^[ \t]*from \.", path.read_text(encoding="utf-8"), re.MULTILINE)]
    if relative:  # a relative import would point elsewhere after the move; none today
        fail("relative imports (from .x import), make them absolute first: " + ", ".join(relative))
    if git("status", "--porcelain", "--untracked-files=no").strip():
        fail("the git tree has changes: commit them first (the move must be one reviewable diff)")
    return True


def move_files(root: Path) -> int:
    """``git mv`` every entry of MOVES (``lmmvae/model.py`` and the folder ``lmmvae/model/`` are two
    names, so the old module moves into the new folder of its name directly)."""
    for package, doc in PACKAGES.items():
        (root / "lmmvae" / package).mkdir(exist_ok=False)
    count = 0
    for old, new in MOVES.items():
        is_package = not (root / "lmmvae" / f"{old}.py").exists()  # lmmvae/model/ is new
        source = f"lmmvae/{old}" if is_package else f"lmmvae/{old}.py"
        target = f"lmmvae/{new.replace('.', '/')}" + ("" if is_package else ".py")
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        git("mv", source, target)
        count += 1
    for package, doc in PACKAGES.items():
        init = root / "lmmvae" / package / "__init__.py"
        init.write_text(f'"""{doc}\n"""\n')
        git("add", str(init.relative_to(root)))
    return count


def dotted_pattern() -> re.Pattern:
    """``lmmvae.<old>`` as a whole name (``lmmvae.train`` but not ``lmmvae.trainings``)."""
    names = "|".join(sorted(map(re.escape, MOVES), key=len, reverse=True))
    return re.compile(rf"(?<![\w/])lmmvae\.({names})(?!\w)")


def path_pattern() -> re.Pattern:
    """``lmmvae/<old>.py`` (a module) or ``lmmvae/<old>`` followed by ``/`` or a non-word (a package)."""
    names = "|".join(sorted(map(re.escape, MOVES), key=len, reverse=True))
    return re.compile(rf"(?<![\w.])lmmvae/({names})(\.py\b|/|(?![\w.]))")


FROM_IMPORT = re.compile(r"^(?P<indent>[ \t]*)from lmmvae import (?P<names>[^()\n#]+?)(?P<comment>[ \t]*#.*)?$",
                         re.MULTILINE)


def rewrite_from_import(match: re.Match, counts: collections.Counter) -> str:
    """``from lmmvae import a, b as c`` -> one line per new package, names kept in their order;
    a renamed module keeps its old name with ``as`` (``from lmmvae.model import latent as model``)."""
    groups: dict[str, list[str]] = {}
    for item in (part.strip() for part in match["names"].split(",")):
        name, _, alias = (x.strip() for x in item.partition(" as "))
        new = MOVES.get(name)
        parent, leaf = ("", name) if new is None else (new.rpartition(".")[0], new.rpartition(".")[2])
        local = alias or name
        groups.setdefault(parent, []).append(leaf if leaf == local else f"{leaf} as {local}")
    if list(groups) == [""]:
        return match[0]
    counts["from lmmvae import"] += 1
    lines = [f"{match['indent']}from lmmvae{'.' + parent if parent else ''} import {', '.join(items)}"
             for parent, items in groups.items()]
    lines[0] += match["comment"] or ""
    return "\n".join(lines)


def rewrite_text(text: str, counts: collections.Counter) -> str:
    """Every reference to a moved module in ``text``: dotted names, paths, then ``from lmmvae import``
    (last: its output ``from lmmvae.model import variants`` must not be read as the old ``lmmvae.model``)."""

    def dotted(match: re.Match) -> str:
        counts["dotted name"] += 1
        return f"lmmvae.{MOVES[match[1]]}"

    def path(match: re.Match) -> str:
        counts["path"] += 1
        return f"lmmvae/{MOVES[match[1]].replace('.', '/')}{match[2]}"

    text = path_pattern().sub(path, dotted_pattern().sub(dotted, text))
    return sort_import_runs(FROM_IMPORT.sub(lambda m: rewrite_from_import(m, counts), text))


IMPORT_LINE = re.compile(r"^([ \t]*)from (lmmvae[\w.]*) import [^()\n]*$")


def sort_import_runs(text: str) -> str:
    """Consecutive one-line ``from lmmvae... import`` lines of one indent, sorted by module again
    (``lmmvae.h5`` sorted before ``lmmvae.intervals``; ``lmmvae.data.h5`` must follow ``lmmvae.answers``)."""
    lines = text.split("\n")
    start = 0
    while start < len(lines):
        first = IMPORT_LINE.match(lines[start])
        end = start + 1
        while first and end < len(lines) and (m := IMPORT_LINE.match(lines[end])) and m[1] == first[1]:
            end += 1
        if end - start > 1:
            lines[start:end] = sorted(lines[start:end], key=lambda line: IMPORT_LINE.match(line)[2])
        start = end
    return "\n".join(lines)


def tracked_text_files(root: Path) -> list[Path]:
    """Every tracked file that reads as UTF-8 text, but this script and binary data."""
    files = []
    for name in git("ls-files", "-z").split("\0"):
        path = root / name
        if not name or name == SELF or path.suffix in SKIP_SUFFIXES or not path.is_file():
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def rewrite_files(root: Path) -> tuple[collections.Counter, collections.Counter]:
    """Rewrite each tracked text file in place; counts per kind and per top-level folder."""
    kinds: collections.Counter = collections.Counter()
    groups: collections.Counter = collections.Counter()
    for path in tracked_text_files(root):
        text = path.read_text(encoding="utf-8")
        before = sum(kinds.values())
        new = rewrite_text(text, kinds)
        if new != text:
            path.write_text(new, encoding="utf-8")
            rel = path.relative_to(root)
            groups[rel.parts[0] if len(rel.parts) > 1 else str(rel)] += sum(kinds.values()) - before
    return kinds, groups


def package_contracts() -> str:
    """The import contracts of the folders (PACKAGE_CONTRACTS) as pyproject.toml text."""
    blocks = ["\n# The folders of lmmvae: each package imports none of the packages above it (its __init__.py\n"
              "# docstring says which it imports); the edges listed under ignore_imports are named there too."]
    for package, forbidden, ignore in PACKAGE_CONTRACTS:
        targets = ", ".join(f'"lmmvae.{name}"' for name in forbidden)
        block = (f'[[tool.importlinter.contracts]]\nname = "lmmvae.{package} imports none of {", ".join(forbidden)}"\n'
                 f'type = "forbidden"\nsource_modules = ["lmmvae.{package}"]\nforbidden_modules = [{targets}]\n')
        if ignore:
            block += "ignore_imports = [" + ", ".join(f'"{edge}"' for edge in ignore) + "]\n"
        blocks.append(block)
    return "\n".join(blocks)


NOT_MODULES = {"lock", "yaml", "fit", "load", "LMMVAE", "LongitudinalData", "Covariate", "read_h5", "write_h5",
               "__version__", "__main__"}  # lmmvae.lock: a file name; the rest: attributes of lmmvae


def unresolved_references(root: Path) -> list[str]:
    """After the move: ``file: reference`` for each ``lmmvae.<a>...`` whose ``lmmvae.<a>`` is no module
    (an old name the rewrite missed) and each ``lmmvae/<path>`` that does not exist."""
    modules = {".".join(p.relative_to(root).with_suffix("").parts) for p in (root / "lmmvae").rglob("*.py")}
    modules |= {m.removesuffix(".__init__") for m in modules}
    found = []
    for path in tracked_text_files(root):
        text, rel = path.read_text(encoding="utf-8"), path.relative_to(root)
        for match in re.finditer(r"(?<![\w/])lmmvae\.(\w+)", text):
            if f"lmmvae.{match[1]}" not in modules and match[1] not in NOT_MODULES:
                found.append(f"{rel}: {match[0]}")
        for match in re.finditer(r"(?<![\w.])lmmvae/([\w/]*\w)(\.py)?", text):
            if not (root / match[0]).exists() and not (root / f"{match[0]}.py").exists():
                found.append(f"{rel}: {match[0]}")
    return sorted(set(found))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only the preflight: unmapped or missing modules")
    args = parser.parse_args(argv)
    root = Path(git("rev-parse", "--show-toplevel").strip())
    if Path.cwd().resolve() != root.resolve():
        fail(f"run me at the repository root ({root}), not in {Path.cwd()}")
    if not preflight(root):
        print("move_packages: already applied (the new packages exist, no old module is left); nothing done")
        return 0
    if args.check:
        print(f"move_packages: ready: {len(MOVES)} moves, every lmmvae module mapped")
        return 0
    moved = move_files(root)
    kinds, groups = rewrite_files(root)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text(encoding="utf-8").rstrip("\n") + "\n" + package_contracts(),
                         encoding="utf-8")
    print(f"moved {moved} modules/packages with git mv; wrote {len(PACKAGES)} package __init__.py")
    print("rewrites by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print("rewrites by place: " + ", ".join(f"{k} {v}" for k, v in sorted(groups.items())))
    left = unresolved_references(root)
    print(f"references that name no module or file after the move: {len(left)}" + "".join(f"\n  {x}" for x in left))
    print(f"appended {len(PACKAGE_CONTRACTS)} package contracts to pyproject.toml; not committed: review, "
          "run lint-imports and the tests, then commit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
