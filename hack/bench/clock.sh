# Sourced by the benchmarks: timestamps from bash's own clock. A `date` process per
# reading would add its start-up (a millisecond or more on a small VM) to every interval
# measured, for both runtimes alike.

# Sets REPLY to the current time in nanoseconds (microsecond resolution).
now_ns() { REPLY=$(( ${EPOCHREALTIME//[!0-9]/} * 1000 )); }
