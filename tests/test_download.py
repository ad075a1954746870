"""Tests for anceflow.download against a local HTTP server serving tiny fixture archives.

The fixtures are built here with the member names and line formats of the real MS MARCO,
TREC DL 2019 and BEIR files (a few lines each), so the whole fetch path runs offline.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from anceflow import download
from anceflow.download import (
    ChecksumError,
    DownloadError,
    RemoteFile,
    download_file,
    extract,
    fetch_beir,
    fetch_msmarco,
)
from anceflow.errors import InputError


# --------------------------------------------------------------------------------------
# A tiny HTTP server with Range support and a "cut the connection once" switch
# --------------------------------------------------------------------------------------


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves files under ``server.root``; honours ``Range: bytes=N-``.

    ``server.drop_once``: URL paths whose next response is cut after half its body.
    ``server.ignore_range``: answer 200 with the whole file even when asked for a range.
    Every request is recorded as ``(path, Range header or None)`` in ``server.log``.
    """

    def do_GET(self):  # noqa: N802 - http.server naming
        srv = self.server
        path = urllib.parse.urlsplit(self.path).path
        srv.log.append((path, self.headers.get("Range")))
        file = srv.root / urllib.parse.unquote(path).lstrip("/")
        if ".." in Path(path).parts or not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        wanted = self.headers.get("Range")
        if wanted and not srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if path in srv.drop_once:
            srv.drop_once.discard(path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True  # HTTP/1.0: the socket closes after this
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.root = root
    httpd.log = []
    httpd.drop_once = set()
    httpd.ignore_range = False
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _put(root: Path, rel: str, data: bytes) -> bytes:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode("utf-8"))


def _targz(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


def _tree(root: Path) -> dict[str, str]:
    """Every file under root (except raw/), as relative path -> text."""
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "raw"
    }


# --------------------------------------------------------------------------------------
# MS MARCO passage
# --------------------------------------------------------------------------------------


def _passage_fixture(server, *, qrels_train_in_tar=True, dl19_qrels=None):
    """Publish fixture passage files; return the table (fixture md5s) to patch in."""
    www = server.root
    members = {
        # real passages are plain text; one has a stray CR and one non-ASCII character
        "collection.tsv": "0\tThe presence of communication amid scientific minds.\n"
                          "1\tCafé culture\rin Manhattan.\n"
                          "2\tThe Manhattan Project was a research effort.\n",
        "queries.train.tsv": "121352\tdefine extreme\n634306\twhat does chattel mean\n",
        "queries.dev.tsv": "1048578\tcost of endless pools\n1048579\twhat is pcnt\n"
                           "1048580\twhat is nacl\n",
        "queries.dev.small.tsv": "1048585\twhat is paula deen's brother\n"
                                 "2\tAndrogen receptor define\n",
        "queries.eval.small.tsv": "19335\tanthropological definition of environment\n",
        "qrels.dev.small.tsv": "1048585\t0\t2\t1\n2\t0\t1\t1\n",
    }
    qrels_train = "121352\t0\t2\t1\n634306\t0\t0\t1\n"
    if qrels_train_in_tar:
        members["qrels.train.tsv"] = qrels_train
    files = {
        "collectionandqueries": _put(www, "msmarcoranking/collectionandqueries.tar.gz",
                                     _targz(members)),
        "qrels.train": _put(www, "msmarcoranking/qrels.train.tsv", qrels_train.encode()),
        # top1000.dev: qid, pid, query, passage; deliberately not sorted by qid
        "top1000.dev": _put(www, "msmarcoranking/top1000.dev.tar.gz", _targz({
            "top1000.dev": "1048585\t2\twhat is paula deen's brother\tThe Manhattan Project.\n"
                           "2\t1\tAndrogen receptor define\tCafé culture in Manhattan.\n"
                           "1048585\t0\twhat is paula deen's brother\tThe presence of...\n",
        })),
        "dl19.queries": _put(www, "msmarcoranking/msmarco-test2019-queries.tsv.gz", _gz(
            "156493\tdo goldfish grow\n1110199\twhat is wifi vs bluetooth\n")),
        "dl19.qrels": _put(www, "deep/2019qrels-pass.txt", (dl19_qrels or (
            "156493 0 0 3\n156493 0 2 0\n1110199 0 1 2\n")).encode()),
        "dl19.top1000": _put(www, "msmarcoranking/msmarco-passagetest2019-top1000.tsv.gz", _gz(
            "156493\t2\tdo goldfish grow\tThe Manhattan Project was a research effort.\n"
            "1110199\t0\twhat is wifi vs bluetooth\tThe presence of communication.\n"
            "156493\t1\tdo goldfish grow\tCafé culture in Manhattan.\n")),
        # TREC DL 2020: queries on the MS MARCO mirror, NIST's graded judgments, the top-1000
        "dl20.queries": _put(www, "msmarcoranking/msmarco-test2020-queries.tsv.gz", _gz(
            "1030303\twho is aziz hashim\n1037496\twho is rep scalise\n")),
        "dl20.qrels": _put(www, "deep/2020qrels-pass.txt", b"1030303 0 2 3\n1030303 0 0 1\n1037496 0 1 0\n"),
        "dl20.top1000": _put(www, "msmarcoranking/msmarco-passagetest2020-top1000.tsv.gz", _gz(
            "1030303\t0\twho is aziz hashim\tThe presence of communication.\n"
            "1030303\t2\twho is aziz hashim\tThe Manhattan Project was a research effort.\n")),
    }
    real = download.MSMARCO_PASSAGE_FILES
    return {key: RemoteFile(real[key].path, _md5(data), real[key].base)
            for key, data in files.items()}


PASSAGE_EXPECTED = {
    "collection.tsv": "0\tThe presence of communication amid scientific minds.\n"
                      "1\tCafé culture in Manhattan.\n"
                      "2\tThe Manhattan Project was a research effort.\n",
    "queries.train.tsv": "121352\tdefine extreme\n634306\twhat does chattel mean\n",
    "qrels.train.tsv": "121352\t0\t2\t1\n634306\t0\t0\t1\n",
    "queries.dev.tsv": "1048585\twhat is paula deen's brother\n2\tAndrogen receptor define\n",
    "qrels.dev.tsv": "1048585\t0\t2\t1\n2\t0\t1\t1\n",
    "candidates.dev.tsv": "1048585\t2\n2\t1\n1048585\t0\n",
    "queries.dl19.tsv": "156493\tdo goldfish grow\n1110199\twhat is wifi vs bluetooth\n",
    "qrels.dl19.tsv": "156493\t0\t0\t3\n156493\t0\t2\t0\n1110199\t0\t1\t2\n",
    "candidates.dl19.tsv": "156493\t2\n1110199\t0\n156493\t1\n",
    "queries.dl20.tsv": "1030303\twho is aziz hashim\n1037496\twho is rep scalise\n",
    "qrels.dl20.tsv": "1030303\t0\t2\t3\n1030303\t0\t0\t1\n1037496\t0\t1\t0\n",
    "candidates.dl20.tsv": "1030303\t0\n1030303\t2\n",
}


@pytest.mark.parametrize("qrels_train_in_tar", [True, False])
def test_fetch_msmarco_passage_layout(server, tmp_path, monkeypatch, qrels_train_in_tar):
    table = _passage_fixture(server, qrels_train_in_tar=qrels_train_in_tar)
    monkeypatch.setitem(download.MSMARCO_FILES, "msmarco-passage", table)
    out = tmp_path / "data" / "msmarco-passage"

    result = fetch_msmarco("msmarco-passage", out, base_url=server.url + "/msmarcoranking/",
                           nist_base_url=server.url + "/deep", progress=False)

    assert result == out
    assert _tree(out) == PASSAGE_EXPECTED
    # the standalone qrels.train.tsv is only fetched when the tarball lacks it
    fetched = {path for path, _ in server.log}
    assert ("/msmarcoranking/qrels.train.tsv" in fetched) is (not qrels_train_in_tar)
    assert "/deep/2019qrels-pass.txt" in fetched
    # downloads survive in the default cache, and no temp folders are left around
    assert (out / "raw" / "collectionandqueries.tar.gz").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["msmarco-passage"]

    # A second run reuses every cached download (md5 matches) and rebuilds the layout.
    requests = len(server.log)
    fetch_msmarco("msmarco-passage", out, base_url=server.url + "/msmarcoranking/",
                  nist_base_url=server.url + "/deep", progress=False)
    assert len(server.log) == requests
    assert _tree(out) == PASSAGE_EXPECTED


def test_fetch_msmarco_bad_line_names_file_and_line(server, tmp_path, monkeypatch):
    table = _passage_fixture(server, dl19_qrels="156493 0 0 3\n156493 0 2\n")
    monkeypatch.setitem(download.MSMARCO_FILES, "msmarco-passage", table)
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        fetch_msmarco("msmarco-passage", out, base_url=server.url + "/msmarcoranking",
                      nist_base_url=server.url + "/deep", cache_dir=tmp_path / "cache",
                      progress=False)
    assert info.value.line == 2
    assert info.value.path.endswith("2019qrels-pass.txt")
    assert not out.exists()  # nothing half-built


def test_fetch_msmarco_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="msmarco-passage"):
        fetch_msmarco("msmarco-docs", tmp_path / "x", progress=False)


# --------------------------------------------------------------------------------------
# MS MARCO document
# --------------------------------------------------------------------------------------


def test_fetch_msmarco_doc_layout(server, tmp_path, monkeypatch):
    www = server.root
    files = {
        # docid, url, title, body; one body holds a stray tab, one doc lacks its body
        "docs": _put(www, "msmarcoranking/msmarco-docs.tsv.gz", _gz(
            "D1555982\thttps://answers.yahoo.com/q\tThe hot glowing surfaces of stars emit "
            "energy\tAnswers Home\tAll Categories\n"
            "D301595\thttp://childparenting.about.com/\tWhat are the Stages of Puberty?\t"
            "Puberty is the time.\n"
            "D1359209\thttp://example.org/x\tNo body here\n")),
        "train.queries": _put(www, "msmarcoranking/msmarco-doctrain-queries.tsv.gz", _gz(
            "1185869\t)what was the immediate impact of the success of the manhattan project?\n"
            "1185868\t_________ justice is designed to repair the harm\n")),
        # real doc qrels are space-separated: qid 0 docid rel
        "train.qrels": _put(www, "msmarcoranking/msmarco-doctrain-qrels.tsv.gz", _gz(
            "3 0 D1555982 1\n5 0 D301595 1\n")),
        "dev.queries": _put(www, "msmarcoranking/msmarco-docdev-queries.tsv.gz", _gz(
            "174249\tdoes xpress bet charge to deposit money in your account\n")),
        "dev.qrels": _put(www, "msmarcoranking/msmarco-docdev-qrels.tsv.gz", _gz(
            "174249 0 D3126539 1\n")),
        "dev.top100": _put(www, "msmarcoranking/msmarco-docdev-top100.gz", _gz(
            "174249 Q0 D3126539 1 -5.99003 IndriQueryLikelihood\n"
            "174249 Q0 D978773 2 -6.18444 IndriQueryLikelihood\n")),
        "dl19.queries": _put(www, "msmarcoranking/msmarco-test2019-queries.tsv.gz", _gz(
            "156493\tdo goldfish grow\n")),
        "dl19.qrels": _put(www, "deep/2019qrels-docs.txt",
                           b"156493 0 D1021204 1\n156493 0 D1040138 3\n"),
        "dl19.top100": _put(www, "msmarcoranking/msmarco-doctest2019-top100.gz", _gz(
            "156493 Q0 D1040138 1 -4.92 IndriQueryLikelihood\n"
            "156493 Q0 D1021204 2 -5.10 IndriQueryLikelihood\n")),
        "dl20.queries": _put(www, "msmarcoranking/msmarco-test2020-queries.tsv.gz", _gz(
            "1030303\twho is aziz hashim\n")),
        "dl20.qrels": _put(www, "deep/2020qrels-docs.txt", b"1030303 0 D301595 2\n"),
        "dl20.top100": _put(www, "msmarcoranking/msmarco-doctest2020-top100.gz", _gz(
            "1030303 Q0 D301595 1 -4.11 IndriQueryLikelihood\n")),
    }
    real = download.MSMARCO_DOC_FILES
    table = {key: RemoteFile(real[key].path, _md5(data), real[key].base)
             for key, data in files.items()}
    table["docs"] = RemoteFile(real["docs"].path, None)  # as in the real table: no md5
    monkeypatch.setitem(download.MSMARCO_FILES, "msmarco-doc", table)
    out = tmp_path / "msmarco-doc"

    fetch_msmarco("msmarco-doc", out, base_url=server.url + "/msmarcoranking/",
                  nist_base_url=server.url + "/deep/", progress=False)

    assert _tree(out) == {
        "collection.tsv":
            "D1555982\thttps://answers.yahoo.com/q\tThe hot glowing surfaces of stars emit "
            "energy\tAnswers Home All Categories\n"
            "D301595\thttp://childparenting.about.com/\tWhat are the Stages of Puberty?\t"
            "Puberty is the time.\n"
            "D1359209\thttp://example.org/x\tNo body here\t\n",
        "queries.train.tsv":
            "1185869\t)what was the immediate impact of the success of the manhattan project?\n"
            "1185868\t_________ justice is designed to repair the harm\n",
        "qrels.train.tsv": "3\t0\tD1555982\t1\n5\t0\tD301595\t1\n",
        "queries.dev.tsv": "174249\tdoes xpress bet charge to deposit money in your account\n",
        "qrels.dev.tsv": "174249\t0\tD3126539\t1\n",
        "candidates.dev.tsv": "174249\tD3126539\n174249\tD978773\n",
        "queries.dl19.tsv": "156493\tdo goldfish grow\n",
        "qrels.dl19.tsv": "156493\t0\tD1021204\t1\n156493\t0\tD1040138\t3\n",
        "candidates.dl19.tsv": "156493\tD1040138\n156493\tD1021204\n",
        "queries.dl20.tsv": "1030303\twho is aziz hashim\n",
        "qrels.dl20.tsv": "1030303\t0\tD301595\t2\n",
        "candidates.dl20.tsv": "1030303\tD301595\n",
    }
    # every collection row has exactly the 4 columns the layout promises
    for row in (out / "collection.tsv").read_text(encoding="utf-8").splitlines():
        assert row.count("\t") == 3


# --------------------------------------------------------------------------------------
# download_file: checksum, resume, skip
# --------------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, so a cut halfway is a real partial file


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    _put(server.root, "f.bin", PAYLOAD)
    dest = tmp_path / "dl" / "f.bin"
    wrong = "0" * 32
    url = server.url + "/f.bin"
    with pytest.raises(ChecksumError) as info:
        download_file(url, dest, md5=wrong, progress=False)
    message = str(info.value)
    assert url in message and wrong in message and _md5(PAYLOAD) in message
    assert not dest.exists()
    assert not (tmp_path / "dl" / "f.bin.part").exists()
    assert list((tmp_path / "dl").iterdir()) == []


def test_checksum_mismatch_in_fetch_leaves_no_output(server, tmp_path, monkeypatch):
    table = _passage_fixture(server)
    table["dl19.top1000"] = RemoteFile(table["dl19.top1000"].path, "f" * 32)
    monkeypatch.setitem(download.MSMARCO_FILES, "msmarco-passage", table)
    out = tmp_path / "out"
    with pytest.raises(ChecksumError, match="msmarco-passagetest2019-top1000.tsv.gz"):
        fetch_msmarco("msmarco-passage", out, base_url=server.url + "/msmarcoranking/",
                      nist_base_url=server.url + "/deep/", progress=False)
    assert not (out / "collection.tsv").exists()
    assert not list((out / "raw").glob("*.part"))
    assert not (out / "raw" / "msmarco-passagetest2019-top1000.tsv.gz").exists()


def test_interrupted_download_resumes_on_next_call(server, tmp_path):
    _put(server.root, "big.bin", PAYLOAD)
    server.drop_once.add("/big.bin")
    dest = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    url = server.url + "/big.bin"

    with pytest.raises(DownloadError, match="resume"):
        download_file(url, dest, md5=_md5(PAYLOAD), retries=0, progress=False)
    half = len(PAYLOAD) // 2
    assert not dest.exists()
    assert part.read_bytes() == PAYLOAD[:half]

    assert download_file(url, dest, md5=_md5(PAYLOAD), progress=True) == dest
    assert server.log == [("/big.bin", None), ("/big.bin", f"bytes={half}-")]
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()


def test_interrupted_download_retries_and_resumes_in_one_call(server, tmp_path):
    _put(server.root, "big.bin", PAYLOAD)
    server.drop_once.add("/big.bin")
    dest = tmp_path / "big.bin"
    download_file(server.url + "/big.bin", dest, md5=_md5(PAYLOAD), retries=1, progress=False)
    assert [rng for _, rng in server.log] == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_scratch(server, tmp_path):
    _put(server.root, "big.bin", PAYLOAD)
    server.ignore_range = True
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(b"garbage that must not be kept")
    download_file(server.url + "/big.bin", dest, md5=_md5(PAYLOAD), progress=False)
    assert server.log == [("/big.bin", "bytes=29-")]
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_is_finished_without_refetching(server, tmp_path):
    # a crash between the last byte and the rename: the server answers 416
    _put(server.root, "big.bin", PAYLOAD)
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(PAYLOAD)
    download_file(server.url + "/big.bin", dest, md5=_md5(PAYLOAD), progress=False)
    assert server.log == [("/big.bin", f"bytes={len(PAYLOAD)}-")]
    assert dest.read_bytes() == PAYLOAD


def test_complete_file_is_not_downloaded_again(server, tmp_path):
    _put(server.root, "f.bin", PAYLOAD)
    dest = tmp_path / "f.bin"
    url = server.url + "/f.bin"
    download_file(url, dest, md5=_md5(PAYLOAD), progress=False)
    download_file(url, dest, md5=_md5(PAYLOAD), progress=False)
    download_file(url, dest, progress=False)  # no md5: existence is enough
    assert len(server.log) == 1

    dest.write_bytes(b"corrupted")  # a wrong local copy is fetched again
    download_file(url, dest, md5=_md5(PAYLOAD), progress=False)
    assert len(server.log) == 2
    assert dest.read_bytes() == PAYLOAD


def test_missing_file_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download_file(server.url + "/nope.bin", tmp_path / "nope.bin", progress=False)
    assert len(server.log) == 1
    assert not (tmp_path / "nope.bin").exists()


# --------------------------------------------------------------------------------------
# extract and BEIR
# --------------------------------------------------------------------------------------


def test_extract_formats(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(_targz({"top/x.txt": "tar member\n"}))
    (tmp_path / "b.zip").write_bytes(_zip({"y/z.txt": "zip member\n"}))
    (tmp_path / "c.tsv.gz").write_bytes(_gz("gz body\n"))
    assert (extract(tmp_path / "a.tar.gz", tmp_path / "A") / "top/x.txt").read_text() \
        == "tar member\n"
    assert (extract(tmp_path / "b.zip", tmp_path / "B") / "y/z.txt").read_text() \
        == "zip member\n"
    assert (extract(tmp_path / "c.tsv.gz", tmp_path / "C") / "c.tsv").read_text() \
        == "gz body\n"


def test_extract_corrupt_archive_leaves_no_dest(tmp_path):
    good = _targz({"x.txt": "hello\n" * 1000})
    (tmp_path / "bad.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="bad.tar.gz"):
        extract(tmp_path / "bad.tar.gz", tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz"]


def test_fetch_beir_extracts_zip(server, tmp_path):
    corpus = '{"_id": "d1", "title": "T", "text": "first doc"}\n'
    queries = '{"_id": "q1", "text": "a question"}\n'
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\n"
    data = _put(server.root, "beir/tinybeir.zip", _zip({
        "tinybeir/corpus.jsonl": corpus,
        "tinybeir/queries.jsonl": queries,
        "tinybeir/qrels/test.tsv": qrels,
    }))
    out = tmp_path / "beir" / "tinybeir"

    result = fetch_beir("tinybeir", out, base_url=server.url + "/beir/", md5=_md5(data),
                        progress=False)

    assert result == out
    assert _tree(out) == {"corpus.jsonl": corpus, "queries.jsonl": queries,
                          "qrels/test.tsv": qrels}
    assert server.log == [("/beir/tinybeir.zip", None)]


def test_cli_beir(server, tmp_path, capsys):
    _put(server.root, "beir/mini.zip", _zip({
        "mini/corpus.jsonl": "{}\n", "mini/queries.jsonl": "{}\n", "mini/qrels/test.tsv": "x\n"}))
    out = tmp_path / "mini"
    code = download.main(["beir", str(out), "--name", "mini", "--base-url",
                          server.url + "/beir", "--no-progress"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert (out / "corpus.jsonl").read_text() == "{}\n"
