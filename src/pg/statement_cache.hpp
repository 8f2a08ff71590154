// Which statements one connection prepares, and under which names.
//
// A statement (its SQL and its parameters' types) run often on a connection is
// prepared there: the server parses and analyses it once, then each run only
// binds and executes it. This is psycopg 3's automatic preparation (also what
// asyncpg, pgx and the JDBC driver do by default): a statement is prepared on
// its run after prepare_threshold unnamed runs, at most prepared_max stay
// prepared, and the least recently used is closed (DEALLOCATE) past that.
// Run counts are kept for at most prepared_max statements as well, so SQL
// that varies (values spliced in) costs a bounded map, never the server.
//
// The cache only decides; ConnectionState sends, and tells it what the server
// answered. Names are never reused on a connection, so a statement closed
// while runs of it are still in the pipeline (sent before the close) is safe.
// Loop thread only.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "stallwatch/pg.hpp"

namespace stallwatch::inline v1::pg::detail {

// Throws std::invalid_argument naming the field when options are out of range.
void check(const ConnectOptions& options);

// The cache's key for sql run with parameters of these types.
std::string statement_key(std::string_view sql, const std::vector<Param>& params);

class StatementCache {
 public:
  explicit StatementCache(const ConnectOptions& options);

  // How to send a run of the statement with this key. Counts the run.
  struct Plan {
    enum Kind { unnamed, prepare_and_run, run_prepared } kind = unnamed;
    std::string name;  // the prepared statement's, for the last two
  };
  Plan plan(const std::string& key);

  // What the server said of a Parse plan() asked for.
  void parsed(const std::string& key, const std::string& name, bool ok);
  // The server no longer runs name (it was discarded, or its plan cannot serve
  // the table as it is now): the next run of key counts afresh. close: the
  // statement still exists on the server and must be closed.
  void forget(const std::string& key, const std::string& name, bool close);
  // DISCARD ALL or DEALLOCATE ALL ran: the server holds none of the names.
  void clear();
  // Names evicted or forgotten since the last call, to DEALLOCATE.
  std::vector<std::string> take_to_close();

 private:
  struct Statement {
    std::string name;
    bool ready = false;  // its Parse succeeded (else it is in flight)
  };

  // A least-recently-used map of at most capacity entries.
  template <class V>
  class Lru {
   public:
    explicit Lru(std::size_t capacity) : capacity_(capacity) {}
    // The entry, made the most recently used; nullptr if absent.
    V* find(const std::string& key);
    // Adds key (absent) as the most recently used; returns the entry evicted
    // to make room, if any.
    std::optional<std::pair<std::string, V>> insert(const std::string& key, V value);
    void erase(const std::string& key);
    void clear();

   private:
    std::size_t capacity_;
    std::list<std::pair<std::string, V>> order_;  // most recently used first
    std::unordered_map<std::string_view, typename std::list<std::pair<std::string, V>>::iterator> index_;
  };

  std::optional<int> threshold_;
  Lru<int> runs_;               // unnamed runs of statements not prepared
  Lru<Statement> statements_;   // prepared, or being prepared
  std::uint64_t serial_ = 0;    // for names never reused
  std::vector<std::string> to_close_;
};

}  // namespace stallwatch::inline v1::pg::detail
