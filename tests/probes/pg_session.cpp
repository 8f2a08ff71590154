// A PostgreSQL session on a loop, linked with the blocking-call probes, run
// by tests/pg_probes_test.py inside a pg_virtualenv cluster (PG* variables).
//
//   pg_session session    a whole stallwatch::pg session: connect, queries
//                         with parameters, errors, a deadline cancelled on the
//                         server, a pool, LISTEN/NOTIFY; prints "session ok"
//   pg_session FUNCTION   one synchronous libpq call on a loop fiber: PQexec,
//                         PQexecParams, PQprepare, PQexecPrepared, PQconnectdb,
//                         PQconnectdbParams, PQgetResult (a connection in
//                         blocking mode), PQcancel
//
// Exit status 0 when the scenario ran, 2 when it failed (the message on
// stderr), 70 when strict mode ended it.
#include <libpq-fe.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stallwatch/pg.hpp"
#include "stallwatch/stallwatch.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;
namespace pg = stallwatch::pg;

namespace {

void session() {
  auto db = pg::connect("");
  db.query("CREATE TEMP TABLE t (id int PRIMARY KEY, name text, score float8, flag bool)");
  db.query("INSERT INTO t VALUES ($1, $2, $3, $4)", 1, "one; 'quoted'", 1.5, true);
  db.query("INSERT INTO t VALUES ($1, $2, $3, $4)", 2, std::optional<std::string>{}, 2.5, false);
  if (db.query("SELECT name FROM t WHERE id = $1", 1).get<std::string>(0, 0) != "one; 'quoted'") throw std::runtime_error("bad round trip");
  try {
    db.query("INSERT INTO t VALUES ($1)", 1);
  } catch (const pg::error& e) {
    if (e.sqlstate() != "23505") throw;
  }
  try {
    db.query(sw::deadline_after(200ms), "SELECT pg_sleep(5)");
  } catch (const sw::deadline_exceeded&) {
  }
  db.query("SELECT 1");

  pg::Pool pool("", 4);
  std::vector<sw::Task<void>> fibers;
  for (int f = 0; f < 16; ++f) {
    fibers.push_back(sw::spawn([&pool, f] {
      for (int i = 0; i < 10; ++i) pool.query("SELECT $1::int + $2::int", f, i);
    }));
  }
  for (auto& t : fibers) t.join();

  auto listener = pg::connect("");
  listener.query("LISTEN session");
  db.query("NOTIFY session, 'hi'");
  if (!listener.notifications().receive(sw::deadline_after(5s))) throw std::runtime_error("no notification");
  std::puts("session ok");
}

// One synchronous call on the loop, on a connection made before the loop.
void blocking_call(std::string_view function, PGconn* conn) {
  if (function == "PQexec") {
    PQclear(PQexec(conn, "SELECT 1"));
  } else if (function == "PQexecParams") {
    PQclear(PQexecParams(conn, "SELECT 1", 0, nullptr, nullptr, nullptr, nullptr, 0));
  } else if (function == "PQprepare") {
    PQclear(PQprepare(conn, "s", "SELECT 1", 0, nullptr));
  } else if (function == "PQexecPrepared") {
    PQclear(PQexecPrepared(conn, "s", 0, nullptr, nullptr, nullptr, 0));
  } else if (function == "PQconnectdb") {
    PQfinish(PQconnectdb(""));
  } else if (function == "PQconnectdbParams") {
    const char* keywords[] = {"dbname", nullptr};
    const char* values[] = {"", nullptr};
    PQfinish(PQconnectdbParams(keywords, values, 1));
  } else if (function == "PQgetResult") {
    PQsendQuery(conn, "SELECT pg_sleep(0.05)");
    while (PGresult* r = PQgetResult(conn)) PQclear(r);
  } else if (function == "PQcancel") {
    PGcancel* cancel = PQgetCancel(conn);
    char errbuf[256];
    PQcancel(cancel, errbuf, sizeof errbuf);
    PQfreeCancel(cancel);
  } else {
    throw std::runtime_error("unknown scenario " + std::string(function));
  }
  std::printf("%s returned\n", std::string(function).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view scenario = argc > 1 ? argv[1] : "session";
  PGconn* conn = nullptr;
  if (scenario != "session") {
    conn = PQconnectdb("");  // off the loop: not a blocking call on it
    if (PQstatus(conn) != CONNECTION_OK) {
      std::fprintf(stderr, "pg_session: %s", PQerrorMessage(conn));
      return 2;
    }
    if (scenario == "PQexecPrepared") PQclear(PQprepare(conn, "s", "SELECT 1", 0, nullptr));
  }
  try {
    sw::run([&] {
      if (scenario == "session") {
        session();
      } else {
        blocking_call(scenario, conn);
      }
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pg_session: %s\n", e.what());
    return 2;
  }
  PQfinish(conn);
  return 0;
}
