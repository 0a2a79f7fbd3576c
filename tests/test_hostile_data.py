"""Hostile inputs, data files and tables: malformed HDF5, ids, huge values, bad CSV files. Each case
asserts a one-line error naming the file, column and row, or the right behaviour."""

from __future__ import annotations

from hostile_common import *  # noqa: F401,F403 - shared imports, fixtures (sim, data_file, finished_run), helpers


# -- data files --------------------------------------------------------------------------------


def _write_raw(path: Path, **replace):
    """A valid file, with datasets/attributes replaced as given (written with h5py directly)."""
    data = simulate_lmm(n_subjects=4, n_times=3, data_dim=2, n_future=1)
    write_h5(data, path)
    with h5py.File(path, "a") as f:
        for key, value in replace.items():
            if key == "format_version":
                f.attrs["format_version"] = value
                continue
            del f[key]
            f[key] = value
            if key.startswith("covariates/"):
                f[key].attrs["kind"] = "continuous"
    return path


@pytest.mark.parametrize("key,value,fragment", [
    ("mask", np.full((12, 2), 256, np.int64), "/mask must contain only 0 and 1, found 256"),
    ("mask", np.full((12, 2), 257, np.int64), "/mask must contain only 0 and 1"),
    ("split", np.full(12, 300, np.int64), "/split must contain only 0 (train)"),
    ("split", np.full(12, -1, np.int64), "/split must contain only"),
    ("format_version", "1", "format_version must be 1"),
    ("format_version", 1.5, "not an integer"),
    ("covariates/time", np.array([b"abc"] * 12), "/covariates/time (continuous) must hold numbers"),
    ("y", np.zeros((12, 2, 2), np.float32), "/y must be 2-D"),
])
def test_malformed_data_file_is_one_line(tmp_path, capsys, key, value, fragment):
    path = _write_raw(tmp_path / "bad.h5", **{key: value})
    rc, err = cli(["data", "show", path], capsys)
    one_line_error(rc, err, str(path), fragment)


def test_file_declaring_more_than_memory_fails_before_reading(tmp_path, capsys):
    path = _write_raw(tmp_path / "huge.h5")
    with h5py.File(path, "a") as f:
        for key in ("y", "mask", "split", "covariates/time", "covariates/sex", "covariates/id"):
            del f[key]
        n = 10**12
        f.create_dataset("y", shape=(n, 1000), dtype="f4", chunks=(1, 1000))
        f.create_dataset("mask", shape=(n, 1000), dtype="u1", chunks=(1, 1000))
        f.create_dataset("split", shape=(n,), dtype="u1", chunks=(1000,))
    assert path.stat().st_size < 10**6
    rc, err = cli(["data", "show", path], capsys)
    one_line_error(rc, err, str(path), "GiB", "memory")


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"garbage, not HDF5\n"])
def test_empty_or_garbage_data_file(tmp_path, capsys, content):
    path = tmp_path / "x.h5"
    path.write_bytes(content)
    rc, err = cli(["data", "show", path], capsys)
    one_line_error(rc, err, str(path), "not a readable HDF5 file")


def test_blank_id_rejected_with_its_row(sim):
    levels = list(sim.covariates["id"].levels)
    levels[3] = ""
    with pytest.raises(DataFormatError, match=r"/covariates/id \(id\) is blank at row 15 \(5 row"):
        LongitudinalData(sim.y, sim.mask, sim.split,
                         {**sim.covariates, "id": Covariate(sim.covariates["id"].values, "id", levels)})


def test_one_id_written_two_ways_is_rejected(sim):
    levels = list(range(8))
    levels[1] = "0.0"
    with pytest.raises(DataFormatError, match=r"levels 0 and '0.0', which are the same id"):
        LongitudinalData(sim.y, sim.mask, sim.split,
                         {**sim.covariates, "id": Covariate(sim.covariates["id"].values, "id", levels)})


def test_ids_match_by_value_in_loader_and_design():
    """12, 12.0, "12" and "12.0" are one subject for the loader and for the design."""
    assert {level_key(v) for v in (12, 12.0, "12", "12.0", np.int64(12), " 12 ")} == {"12"}
    assert level_key("s12") != level_key(12) and level_key(1.5) == level_key("1.50")
    assert match_levels([12.0, "7", "x"], [7, 12]).tolist() == [1, 0, -1]
    assert match_levels(["012"], ["012", "12"]).tolist() == [0]  # exact text wins ...
    assert match_levels([12], ["012", "12.0"]).tolist() == [-1]  # ... an ambiguous key matches nothing
    train = {"id": Covariate(np.array([0, 1, 1]), "id", levels=[7, 12]),
             "c": Covariate(np.array([0, 1, 0]), "categorical", levels=[1, 2])}
    new = LongitudinalData(np.zeros((2, 1)), np.ones((2, 1)), np.zeros(2),
                           {"id": Covariate(np.array(["12.0", "7"], dtype=object), "id"),
                            "c": Covariate(np.array([2.0, 1.0]), "categorical")})
    assert recode(new, {"id": [7, 12], "c": [1, 2]})["id"].tolist() == [1, 0]
    fitted = Design("~ C(c) + (1 | id)").fit(train)
    x = fitted.transform(new.covariates)
    assert x.levels[0].tolist() == [1, 0]  # "12.0" is subject 12, not an unseen one
    assert x.shared[:, 1].tolist() == [1.0, 0.0]  # categorical 2.0 is level 2


def test_unseen_subjects_allowed_with_a_warning_naming_how_many():
    train = {"id": Covariate(np.array([0, 1]), "id", levels=["a", "b"]), "t": Covariate(np.array([0.0, 1.0]), "time")}
    fitted = Design("~ t + (1 | id)").fit(train)
    new = {"id": Covariate(np.array([0, 1, 2, 2]), "id", levels=["a", "z", "y"]), "t": Covariate(np.zeros(4), "time")}
    with pytest.warns(lmmvae.errors.LmmvaeWarning, match=r"2 'id' level\(s\) \(3 row\(s\)\) not seen in training"):
        x = fitted.transform(new)
    assert x.levels[0].tolist() == [0, -1, -1, -1] and (x.values[0][1:] == 0).all()


def test_huge_covariate_is_standardised_not_zeroed(sim, tmp_path):
    """A covariate whose sum of squares overflows: finite statistics, a non-zero column, no Infinity."""
    time = sim.covariates["time"].values * 1e300
    data = LongitudinalData(sim.y, sim.mask, sim.split, {**sim.covariates, "time": Covariate(time, "time")})
    fitted = lmmvae.fit(data, out=tmp_path / "run", progress=False, **SETTINGS)
    text = (tmp_path / "run" / "design.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    column = fitted.design.transform(data.covariates).shared[:, 1]
    train = sim.subset(sim.split_index("train")).covariates
    reference = Design(SETTINGS["design"]).fit(train).transform(sim.covariates).shared[:, 1]
    assert np.isfinite(column).all() and np.allclose(column, reference, atol=1e-5)  # as if unscaled
    extreme = Design("~ x").fit({"x": Covariate(np.array([-1.7e308, 1.7e308, 1.7e308]), "continuous")})
    assert np.isfinite(extreme.transform({"x": np.array([1.7e308])}).shared).all()


def test_value_overflowing_the_standardisation_is_one_line():
    fitted = Design("~ x").fit({"x": Covariate(np.array([0.0, 1e-300, 2e-300]), "continuous")})
    with pytest.raises(DesignError, match=r"x overflows at row 1 \(covariate 'x' is too far outside"):
        fitted.transform({"x": np.array([0.0, 1e10])})


def test_all_missing_file_is_refused_and_leaves_nothing(sim, tmp_path, capsys):
    data = LongitudinalData(sim.y, np.zeros_like(sim.mask), sim.split, sim.covariates)
    path = write_h5(data, tmp_path / "empty.h5")
    rc, err = cli(["fit", "--data", path, "--model", model_yaml(tmp_path), "--out", tmp_path / "run"], capsys)
    one_line_error(rc, err, str(path), "every entry of the train split is missing")
    assert not (tmp_path / "run").exists()
    rc, err = cli(["evaluate", "--run", "nowhere", "--data", path, "--out", tmp_path / "m.json"], capsys)
    one_line_error(rc, err, "nowhere")


def test_huge_observations_refused_up_front_and_leave_nothing(sim, tmp_path, capsys):
    y = sim.y.copy()
    y[7, 1] = 1e30
    path = write_h5(LongitudinalData(y, sim.mask, sim.split, sim.covariates), tmp_path / "huge.h5")
    rc, err = cli(["fit", "--data", path, "--model", model_yaml(tmp_path), "--out", tmp_path / "run"], capsys)
    one_line_error(rc, err, str(path), "row 7, column 1", "rescale")
    assert not (tmp_path / "run").exists()


def test_duplicate_id_time_rows_warn_with_their_count(sim, tmp_path):
    rows = np.r_[np.arange(sim.n_obs), [0, 1, 2]]
    data = sim.subset(rows)
    with pytest.warns(lmmvae.errors.LmmvaeWarning, match=r"3 row\(s\) repeat an earlier row's \(id, time\)"):
        lmmvae.fit(data, progress=False, **SETTINGS)


def test_mcc_on_data_without_rows(sim, finished_run, tmp_path, capsys):
    path = write_h5(sim.subset(np.arange(0)), tmp_path / "none.h5")
    rc, err = cli(["mcc", finished_run, finished_run, "--data", path], capsys)
    one_line_error(rc, err, str(path), "no rows")


# -- tables (CSV) ------------------------------------------------------------------------------


@pytest.mark.parametrize("content,fragment", [
    (b"", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is binary"),
    (b"time,sex,id\n", "has a header but no rows"),
    (b"time,sex,id\n0.5,1,s1\nabc,0,s2\n", "column 'time' at row 2 (line 3): 'abc' is not a finite number"),
    (b"time,sex,id\n0.5,1,s1\n0.2,0,\n", "column 'id' is blank at row 2 (line 3)"),
    (b"time,sex,id\n0.5,2,s1\n", "column 'sex' at row 1 (line 2): 2; sex is binary"),
    (b"time,id\n0.5,s1\n", "lacks column(s) sex"),
])
def test_bad_predict_csv_names_file_column_and_row(finished_run, tmp_path, capsys, content, fragment):
    path = tmp_path / "new.csv"
    path.write_bytes(content)
    rc, err = cli(["predict", "--run", finished_run, "--covariates", path, "--out", tmp_path / "p.h5"], capsys)
    one_line_error(rc, err, str(path), fragment)
    assert not (tmp_path / "p.h5").exists()


def test_predict_csv_ids_by_value_and_unseen_subjects_warned(finished_run, tmp_path, capsys):
    path = tmp_path / "new.csv"
    path.write_text("time,sex,id\n0.5,1,s1\n0.2,0,s1\n0.3,0,nobody\n")
    rc, err = cli(["predict", "--run", finished_run, "--covariates", path, "--out", tmp_path / "p.h5"], capsys)
    assert rc == 0, err
    warnings = [ln for ln in err.splitlines() if ln.startswith("lmmvae: warning:")]
    assert len(warnings) == 1 and "1 'id' level(s) (1 row(s)) not seen in training" in warnings[0]
    with h5py.File(tmp_path / "p.h5") as f:
        assert f["y_pred"].shape == (3, 4)



def test_binary_grid_csv_for_the_latent_figure(tmp_path, capsys):
    grid = tmp_path / "grid.csv"
    grid.write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "z.h5").write_bytes(b"")
    rc, err = cli(["report", "latent-effects", "--grid", grid, "--latent", tmp_path / "z.h5",
                   "--png", tmp_path / "f.png", "--pdf", tmp_path / "f.pdf"], capsys)
    one_line_error(rc, err, str(grid), "is binary")
    assert not (tmp_path / "f.png").exists()


def _h5ad(path: Path, codes=(0, 0), indices=(0,), x_dense=True) -> Path:
    with h5py.File(path, "w") as f:
        obs = f.create_group("obs")
        obs.attrs["_index"] = "_index"
        obs.create_dataset("_index", data=np.array([b"a", b"b"]))
        obs.create_dataset("id", data=np.array([1, 2]))
        obs.create_dataset("t", data=np.array([0.0, 1.0]))
        cat = obs.create_group("c")
        cat.create_dataset("categories", data=np.array([b"u"]))
        cat.create_dataset("codes", data=np.array(codes))
        var = f.create_group("var")
        var.attrs["_index"] = "_index"
        var.create_dataset("_index", data=np.array([b"g"]))
        if x_dense:
            f.create_dataset("X", data=np.ones((2, 1)))
        else:
            x = f.create_group("X")
            x.attrs["encoding-type"], x.attrs["shape"] = "csr_matrix", [2, 1]
            x.create_dataset("data", data=[1.0])
            x.create_dataset("indices", data=list(indices))
            x.create_dataset("indptr", data=[0, 1, 1])
    return path


@pytest.mark.parametrize("layout,fragment", [
    (dict(codes=(0, 7)), "codes need to be between"),
    (dict(x_dense=False, indices=(5,)), "not a readable AnnData layout"),
])
def test_malformed_h5ad_layout_is_one_line(tmp_path, capsys, layout, fragment):
    path = _h5ad(tmp_path / "t.h5ad", **layout)
    rc, err = cli(["data", "from-table", "--table", path, "--subject", "id", "--time", "t", "--out",
                   tmp_path / "o.h5"], capsys)
    one_line_error(rc, err, str(path), fragment)
    assert not (tmp_path / "o.h5").exists()
