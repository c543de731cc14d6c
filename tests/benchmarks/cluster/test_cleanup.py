"""Ownership and cleanup: a crashed run's leftovers go, other people's things stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import need_netns

from benchmarks.cluster import netns
from benchmarks.cluster.harness import Cluster, ClusterBusy, lock_path
from benchmarks.cluster.spec import ClusterSpec

pytestmark = pytest.mark.cluster


@pytest.fixture
def prefix() -> Iterator[str]:
    """A prefix no other test run uses, and everything with it removed afterwards."""
    need_netns()
    p = f"cz{os.getpid() % 10000}"
    yield p
    netns.purge(p, ClusterSpec(prefix=p).root)
    lock_path(p).unlink(missing_ok=True)  # a per-run prefix: do not leave its lock behind
    for extra in (f"{p}x-decoy", f"{p}x-dummy"):
        netns.run_ip("netns", "del", extra, check=False)
        netns.run_ip("link", "del", extra, check=False)


def _sleeper(argv_prefix: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*argv_prefix, "sleep", "600"], cwd=cwd, start_new_session=True, stdin=subprocess.DEVNULL
    )


def _alive(p: subprocess.Popen[bytes]) -> bool:
    return p.poll() is None


def test_down_removes_a_crashed_runs_leftovers_and_nothing_else(prefix: str) -> None:
    spec = ClusterSpec(prefix=prefix)
    work = spec.root / "stream1"
    work.mkdir(parents=True)
    # what a run killed half-way leaves: a bridge, hosts with processes, and a process
    # whose namespace was already deleted
    netns.run_ip("link", "add", spec.bridge, "type", "bridge")
    netns.add_host(spec.ns("stream1"), spec.ns("stream1"), spec.bridge, "10.213.250.11/24")
    netns.add_host(spec.ns("head"), spec.ns("head"), spec.bridge, "10.213.250.2/24")
    in_ns = _sleeper(netns.exec_argv(spec.ns("stream1"), []), work)
    orphan = _sleeper(netns.exec_argv(spec.ns("head"), []), work)
    time.sleep(0.3)
    netns.run_ip("netns", "del", spec.ns("head"))
    # not ours: a namespace that merely starts with the same letters, and a process in the
    # root namespace that happens to run from the run folder
    netns.run_ip("netns", "add", f"{prefix}x-decoy")
    bystander = _sleeper([], work)
    time.sleep(0.3)
    try:
        found = Cluster(spec).leftovers()
        assert found["namespaces"] == [spec.ns("stream1")]
        assert {str(in_ns.pid), str(orphan.pid)} <= set(found["processes"])
        assert str(bystander.pid) not in found["processes"]

        res = Cluster(spec).down()
        assert set(res["removed"]["links"]) >= {spec.bridge, spec.ns("stream1")}
        for p in (in_ns, orphan):
            p.wait(10)
        assert Cluster(spec).leftovers() == {
            "namespaces": [],
            "links": [],
            "processes": [],
            "dirs": [],
        }
        assert f"{prefix}x-decoy" in netns.list_namespaces()
        assert _alive(bystander)
    finally:
        for p in (in_ns, orphan, bystander):
            p.kill()
            p.wait(10)


def test_up_refuses_a_prefix_that_a_live_process_owns(prefix: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock_path(prefix))!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
            "print('locked', flush=True); time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ClusterBusy, match=f"owned by pid {holder.pid}"):
            Cluster(ClusterSpec(prefix=prefix)).up()
        with pytest.raises(ClusterBusy):
            Cluster(ClusterSpec(prefix=prefix)).down()
        assert not [n for n in netns.list_namespaces() if n.startswith(prefix + "-")]
    finally:
        holder.kill()
        holder.wait(10)
    # the owner is gone (a crash): the prefix is free again
    assert Cluster(ClusterSpec(prefix=prefix)).down()["removed"]["namespaces"] == []


def test_up_refuses_a_subnet_already_on_an_interface(prefix: str) -> None:
    dummy = f"{prefix}x-dummy"
    netns.run_ip("link", "add", dummy, "type", "bridge")  # no dummy module here
    netns.run_ip("addr", "add", "10.213.251.7/24", "dev", dummy)
    spec = ClusterSpec(prefix=prefix, subnet="10.213.251.0/24")
    with pytest.raises(ClusterBusy, match=f"overlaps 10.213.251.7/24 on interface {dummy}"):
        Cluster(spec).up()
    assert Cluster(spec).leftovers()["namespaces"] == []
    assert dummy in {str(link["ifname"]) for link in netns.list_links()}
