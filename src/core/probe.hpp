// USDT probes: STALLWATCH_PROBE(name, args...) becomes a <sys/sdt.h> probe in
// provider "stallwatch", or nothing when built without systemtap-sdt-dev.
// The list of probes and their arguments is documented in probes/README.md:
//   slice_begin(loop, fiber)   loop_idle(loop)
//   fiber_spawn(loop, fiber)   fiber_exit(loop, fiber)
//   stall_begin(loop, fiber, age_ns)   stall_end(loop, fiber, wall_ns)
// Use the numbered forms, e.g. STALLWATCH_PROBE2(slice_begin, index, fiber_id);
// arguments are integers or pointers. Any thread; a disabled probe is a nop.
#pragma once

#include "config.h"

#if STALLWATCH_HAVE_SDT
#include <sys/sdt.h>
#define STALLWATCH_PROBE(...) DTRACE_PROBE(stallwatch, __VA_ARGS__)
#define STALLWATCH_PROBE1(name, a) DTRACE_PROBE1(stallwatch, name, a)
#define STALLWATCH_PROBE2(name, a, b) DTRACE_PROBE2(stallwatch, name, a, b)
#define STALLWATCH_PROBE3(name, a, b, c) DTRACE_PROBE3(stallwatch, name, a, b, c)
#else
#define STALLWATCH_PROBE(...) ((void)0)
#define STALLWATCH_PROBE1(name, a) ((void)0)
#define STALLWATCH_PROBE2(name, a, b) ((void)0)
#define STALLWATCH_PROBE3(name, a, b, c) ((void)0)
#endif
