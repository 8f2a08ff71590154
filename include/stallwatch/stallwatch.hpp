// stallwatch/stallwatch.hpp — the umbrella header: everything a service uses
// (stallwatch/testing.hpp, for doctest suites, is included separately).
// The clients are libraries of their own and are included by name, with
// their library linked: <stallwatch/curl.hpp> and <stallwatch/http.hpp>
// (libstallwatch-curl), <stallwatch/pg.hpp> (libstallwatch-pg).
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

// Which clients this build has (STALLWATCH_HAVE_CURL, STALLWATCH_HAVE_PG).
#include "stallwatch/features.hpp"
