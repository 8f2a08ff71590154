// The culprit of a report: the first frame, innermost first, that belongs to
// the application. Not the application: the C and C++ runtimes (libc,
// libstdc++, libgcc_s, the dynamic loader, the vDSO), the system's shared
// libraries (libcurl, libsqlite3 … under /usr/lib), stallwatch itself (its
// library and its installed headers), and code from a system include
// directory (a standard-library template inlined into, or instantiated in,
// the application's own module). A service names more
// through Options::not_app / STALLWATCH_NOT_APP. Pure functions: any
// thread; NOT async-signal-safe.
//
//   const CulpritRules rules = culprit_rules(config.not_app);
//   if (const Frame* f = find_culprit(frames, rules)) ... f->function, f->file, f->line
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "symbolize/symbolizer.hpp"

namespace stallwatch::emit {

using symbolize::Frame;

struct CulpritRules {
  // Module file names, matched as STALLWATCH_ALLOW matches them: equal, or
  // continued by '.' ("libc" matches "libc.so.6").
  std::vector<std::string> modules;
  // Source path prefixes ("/usr/include/"): a frame whose file starts with
  // one is library code, whichever module holds it.
  std::vector<std::string> path_prefixes;
  // Directories whose shared objects are the system's, not the application's
  // (a frame's Frame::module_path starts with one).
  std::vector<std::string> module_dirs;
  // Source path parts ("/include/stallwatch/"): a frame whose file contains
  // one is library code, wherever the library is installed.
  std::vector<std::string> path_parts;
};

// The defaults: the runtimes' and stallwatch's modules, the vDSO, every
// shared object under the system library directories (/lib/, /usr/lib/,
// /lib64/, /usr/lib64/ and the multiarch directories inside them), the
// system include directories (/usr/include/, /usr/local/include/,
// /usr/lib/gcc/), and stallwatch's headers wherever they are installed
// (…/include/stallwatch/).
CulpritRules default_culprit_rules();

// The defaults extended by not_app entries (Config::not_app, validated):
// one starting with '/' is a path prefix, any other a module name.
CulpritRules culprit_rules(const std::vector<std::string>& not_app);

// The first frame of frames (innermost first) that the rules leave to the
// application, or null when none does.
const Frame* find_culprit(const std::vector<Frame>& frames, const CulpritRules& rules);

// The culprit rendered for a report's head line, "busy_hash(std::string
// const&) at app/hash.cpp:42", or "(no application frame)" for null; and
// appended to a JSON object as `,"culprit":{function,file,line,module}` (null
// when there is none). One helper per format, shared by stall and
// blocking-call reports (format.cpp).
std::string culprit_text(const Frame* culprit);
void append_culprit_json(std::string& out, const Frame* culprit);

}  // namespace stallwatch::emit
