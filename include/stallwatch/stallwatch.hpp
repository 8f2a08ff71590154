// stallwatch/stallwatch.hpp — the umbrella header: everything a service uses
// (stallwatch/testing.hpp, for doctest suites, is included separately).
#pragma once

#include "stallwatch/allow_blocking.hpp"
#include "stallwatch/collect.hpp"
#include "stallwatch/config.hpp"
#include "stallwatch/deadline.hpp"
#include "stallwatch/errors.hpp"
#include "stallwatch/file.hpp"
#include "stallwatch/future.hpp"
#include "stallwatch/in_process.hpp"
#include "stallwatch/in_thread.hpp"
#include "stallwatch/io.hpp"
#include "stallwatch/loop.hpp"
#include "stallwatch/loop_handle.hpp"
#include "stallwatch/metrics.hpp"
#include "stallwatch/net.hpp"
#include "stallwatch/process.hpp"
#include "stallwatch/shared_channel.hpp"
#include "stallwatch/sync.hpp"
#include "stallwatch/watchdog.hpp"

#include "stallwatch/features.hpp"
#if STALLWATCH_HAVE_CURL
#include "stallwatch/curl.hpp"
#include "stallwatch/http.hpp"
#endif
#if STALLWATCH_HAVE_PG
#include "stallwatch/pg.hpp"
#endif
