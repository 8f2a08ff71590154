// USDT probes: STALLWATCH_PROBE(name, args...) becomes a <sys/sdt.h> probe in
// provider "stallwatch", or nothing when built without systemtap-sdt-dev.
// The list of probes and their arguments is documented in probes/README.md.
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
