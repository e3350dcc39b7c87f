"""`orchestrator lava export|import`: the rig's runs as LAVA jobs, and their results back.

A LAVA job cannot talk to the rig while it runs: its test action watches the
console (`monitors`). So the rig decides beforehand what each boot runs:

- export: per kernel, each group of suites that shares a machine (as in
  `orchestrator run`) is recorded against a `RecordingTarget`, which keeps
  the commands and reboots the suites send (Suite.script). Each recorded
  boot becomes a shell script in the host's initramfs (/rig-lava/boot-N.sh,
  started by /init through `rig.run=`), and a deploy/boot/test block of the
  kernel's job whose QEMU options are the group's machine. The script runs
  every command under a watchdog (a command it kills runs once more: the
  job cannot reboot in the middle of a boot), frames its output with
  RIG-CMD-BEGIN/END (status, host uptime before and after, whether the
  watchdog killed it),
  and prints one `RIG-CASE <id> pass|fail` line per case for LAVA's monitor:
  pass when all the suite's commands in that boot ran to their end. A
  command a suite repeats right away (a rerun after a failure) runs again
  only if the previous attempt failed.
- import: the job's log (lava-run's output, or `lavacli jobs logs --raw`)
  gives each boot's console and each command's output. A `ReplayTarget`
  answers the suites' own run() with those outputs, so verdicts come from
  the same judging code as a direct run's, and are written as a run
  directory (results.json, junit.xml, results.ktap, report.md).

Modules: jobs (what each boot runs, recorded), render (boot scripts, job and
device YAML), export, logs (reading a job's log), replay (import).
docs/lava.md has the why and the how.
"""
