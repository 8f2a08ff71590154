// USDT tracepoints: STALLWATCH_TRACE(name, args...) becomes a <sys/sdt.h> probe
// in provider "stallwatch", or nothing when built without systemtap-sdt-dev.
// The list of tracepoints and their arguments is documented in probes/README.md
// (bpftrace attaches to them as usdt probes):
//   slice_begin(loop, fiber)   loop_idle(loop)
//   fiber_spawn(loop, fiber)   fiber_exit(loop, fiber)
//   stall_begin(loop, fiber, age_ns)   stall_end(loop, fiber, wall_ns)
// Use the numbered forms, e.g. STALLWATCH_TRACE2(slice_begin, index, fiber_id);
// arguments are integers or pointers. Any thread; a disabled tracepoint is a nop.
#pragma once

#include "config.h"

#if STALLWATCH_HAVE_SDT
#include <sys/sdt.h>
#define STALLWATCH_TRACE(...) DTRACE_PROBE(stallwatch, __VA_ARGS__)
#define STALLWATCH_TRACE1(name, a) DTRACE_PROBE1(stallwatch, name, a)
#define STALLWATCH_TRACE2(name, a, b) DTRACE_PROBE2(stallwatch, name, a, b)
#define STALLWATCH_TRACE3(name, a, b, c) DTRACE_PROBE3(stallwatch, name, a, b, c)
#else
#define STALLWATCH_TRACE(...) ((void)0)
#define STALLWATCH_TRACE1(name, a) ((void)0)
#define STALLWATCH_TRACE2(name, a, b) ((void)0)
#define STALLWATCH_TRACE3(name, a, b, c) ((void)0)
#endif
