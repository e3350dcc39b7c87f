#!/bin/sh
# riscv-kvm-rig, LAVA job for kernel k1: boot 1 (kvm-host, counters, isolation).
# Written by 'orchestrator lava export'; /init runs it (rig.run=) and powers off.
cd /
# rig_run ID TIMEOUT FILE: FILE's output between RIG-CMD-BEGIN and RIG-CMD-END ID STATUS
# UPTIME-BEFORE UPTIME-AFTER done|timeout. The watchdog kills its process group; a
# command it killed runs once more (where `orchestrator run` would reboot and rerun).
rig_run() {
    echo "RIG-CMD-BEGIN $1"
    rm -f "/tmp/rig-killed-$1"
    b=$(cut -d' ' -f1 /proc/uptime)
    setsid sh "$3" </dev/null 2>&1 &
    p=$!
    (sleep "$2"; touch "/tmp/rig-killed-$1"; kill -9 -"$p" "$p") >/dev/null 2>&1 &
    w=$!
    wait "$p"
    s=$?
    kill "$w" 2>/dev/null
    e=$(cut -d' ' -f1 /proc/uptime)
    if [ -e "/tmp/rig-killed-$1" ]; then how=timeout; else how=done; fi
    echo "RIG-CMD-END $1 $s $b $e $how"
    if [ "$how" = timeout ]; then
        [ -z "$4" ] && { rig_run "$1" "$2" "$3" again; return $?; }
        ok=fail
    fi
    return $s
}
echo "RIG-LAVA-BOOT 1"
echo 'RIG-SUITE-BEGIN kvm-host'
ok=pass
rig_run 1 300 /rig-lava/cmd-1.sh
echo 'RIG-CASE kvm-host/hypervisor-extension '$ok
echo 'RIG-CASE kvm-host/dev-kvm '$ok
echo 'RIG-SUITE-END kvm-host'
echo 'RIG-SUITE-BEGIN counters'
ok=pass
rig_run 2 300 /rig-lava/cmd-2.sh
rig_run 3 300 /rig-lava/cmd-3.sh
rig_run 4 300 /rig-lava/cmd-4.sh
echo 'RIG-CASE counters/no-pmu/VS/cycle/scounteren=0x0 '$ok
echo 'RIG-CASE counters/no-pmu/VS/time/scounteren=0x0 '$ok
echo 'RIG-CASE counters/no-pmu/VS/instret/scounteren=0x0 '$ok
echo 'RIG-CASE counters/no-pmu/VS/hpmcounter3/scounteren=0x0 '$ok
echo 'RIG-CASE counters/no-pmu/VU/cycle/scounteren=0x0 '$ok
echo 'RIG-CASE counters/no-pmu/VU/time/scounteren=0x0 '$ok
echo 'RIG-CASE counters/no-pmu/VU/instret/scounteren=0x0 '$ok
echo 'RIG-CASE counters/no-pmu/VU/hpmcounter3/scounteren=0x0 '$ok
echo 'RIG-CASE counters/no-pmu/VS/cycle/scounteren=0x7 '$ok
echo 'RIG-CASE counters/no-pmu/VS/time/scounteren=0x7 '$ok
echo 'RIG-CASE counters/no-pmu/VS/instret/scounteren=0x7 '$ok
echo 'RIG-CASE counters/no-pmu/VS/hpmcounter3/scounteren=0x7 '$ok
echo 'RIG-CASE counters/no-pmu/VU/cycle/scounteren=0x7 '$ok
echo 'RIG-CASE counters/no-pmu/VU/time/scounteren=0x7 '$ok
echo 'RIG-CASE counters/no-pmu/VU/instret/scounteren=0x7 '$ok
echo 'RIG-CASE counters/no-pmu/VU/hpmcounter3/scounteren=0x7 '$ok
echo 'RIG-CASE counters/pmu/VS/cycle/scounteren=0x0 '$ok
echo 'RIG-CASE counters/pmu/VS/time/scounteren=0x0 '$ok
echo 'RIG-CASE counters/pmu/VS/instret/scounteren=0x0 '$ok
echo 'RIG-CASE counters/pmu/VS/hpmcounter3/scounteren=0x0 '$ok
echo 'RIG-CASE counters/pmu/VU/cycle/scounteren=0x0 '$ok
echo 'RIG-CASE counters/pmu/VU/time/scounteren=0x0 '$ok
echo 'RIG-CASE counters/pmu/VU/instret/scounteren=0x0 '$ok
echo 'RIG-CASE counters/pmu/VU/hpmcounter3/scounteren=0x0 '$ok
echo 'RIG-CASE counters/pmu/VS/cycle/scounteren=0x7 '$ok
echo 'RIG-CASE counters/pmu/VS/time/scounteren=0x7 '$ok
echo 'RIG-CASE counters/pmu/VS/instret/scounteren=0x7 '$ok
echo 'RIG-CASE counters/pmu/VS/hpmcounter3/scounteren=0x7 '$ok
echo 'RIG-CASE counters/pmu/VU/cycle/scounteren=0x7 '$ok
echo 'RIG-CASE counters/pmu/VU/time/scounteren=0x7 '$ok
echo 'RIG-CASE counters/pmu/VU/instret/scounteren=0x7 '$ok
echo 'RIG-CASE counters/pmu/VU/hpmcounter3/scounteren=0x7 '$ok
echo 'RIG-SUITE-END counters'
echo 'RIG-SUITE-BEGIN isolation'
ok=pass
rig_run 5 30 /rig-lava/cmd-5.sh
rig_run 6 30 /rig-lava/cmd-6.sh
echo 'RIG-CASE isolation/perf_user_access=0/pinned/host-policy '$ok
echo 'RIG-CASE isolation/perf_user_access=0/pinned/guest-value '$ok
echo 'RIG-CASE isolation/perf_user_access=2/pinned/host-policy '$ok
echo 'RIG-CASE isolation/perf_user_access=2/pinned/guest-value '$ok
echo 'RIG-SUITE-END isolation'
echo "RIG-LAVA-DONE 1"
