"""The parts of ``bench/host_forwarding.py`` (which runs them and documents the method):

common.py     names, sizes and CPUs of the topology; errors; starting and stopping
              processes (every one is stopped at the end)
namespaces.py the two namespaces and their veth, built and removed
counters.py   the kernel's counters: /proc/<pid>/net/dev, raw sockets, CPU time, RSS
traffic.py    the frames, trafgen, a measured window, the sender alone
receivers.py  the bare loop and the daemon: delivery check, latency, one measurement
sources.py    which gateway/ a daemon runs: the work tree, or a commit's (git archive)
report.py     ratios to the bare loop within each repetition, the comparison of two
              commits with its verdict, the tables
"""
