// stallwatch::pg in a few lines: a pool, parameters, a deadline, NULLs and
// LISTEN/NOTIFY, with 20 fibers sharing 4 connections. README.md quotes it.
//
//   stallwatch-pg-example ["host=127.0.0.1 dbname=app user=app"]   (empty: the PG* variables)
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <stallwatch/pg.hpp>
#include <stallwatch/stallwatch.hpp>

using namespace std::chrono_literals;
namespace pg = stallwatch::pg;

int main(int argc, char** argv) {
  const std::string conninfo = argc > 1 ? argv[1] : "";
  return stallwatch::run([&] {
    pg::Pool db(conninfo, 4);  // up to 4 connections, queries pipelined on them
    db.query("CREATE TABLE IF NOT EXISTS visits (path text, ms float8, referrer text)");  // seen by every connection

    std::vector<stallwatch::Task<void>> handlers;
    for (int i = 0; i < 20; ++i) {
      handlers.push_back(stallwatch::spawn([&db, i] {
        std::optional<std::string> referrer;  // NULL unless set
        if (i % 2 == 0) referrer = "https://example.org/?q='x'; --";
        db.query("INSERT INTO visits(path, ms, referrer) VALUES ($1, $2, $3)", "/page/" + std::to_string(i),
                 i * 1.5, referrer);
      }));
    }
    for (auto& h : handlers) h.join();

    auto r = db.query(stallwatch::deadline_after(300ms),
                      "SELECT path, referrer FROM visits WHERE ms > $1 ORDER BY ms LIMIT 3", 10.0);
    for (int row = 0; row < r.size(); ++row) {
      const auto referrer = r.get<std::optional<std::string>>(row, 1);
      std::printf("%s from %s\n", r.get<std::string>(row, 0).c_str(), referrer ? referrer->c_str() : "(none)");
    }

    try {
      db.query(stallwatch::deadline_after(100ms), "SELECT pg_sleep(5)");
    } catch (const stallwatch::deadline_exceeded& e) {
      std::printf("%s\n", e.what());  // the server cancelled it; the pool carries on
    }

    auto listener = pg::connect(conninfo);
    listener.query("LISTEN visits");
    db.query("SELECT pg_notify('visits', $1)", "20 new");
    if (auto note = listener.notifications().receive(stallwatch::deadline_after(5s))) {
      std::printf("notification on %s: %s\n", note->channel.c_str(), note->payload.c_str());
    }
    db.query("DROP TABLE visits");
    return 0;
  });
}
