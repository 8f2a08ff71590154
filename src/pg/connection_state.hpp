// One libpq connection driven by the loop (pg.hpp's Connection holds it).
//
// libpq speaks PostgreSQL; this only turns its socket into fiber waits
// (STYLE.md rule 19). The connection lives in pipeline mode and in
// non-blocking mode. Three kinds of fiber touch it, one at a time on its
// loop (libpq is never entered across a park):
//   - a querying fiber queues a Request, wakes the writer and parks on it;
//   - the writer fiber sends the queued queries, each with a Sync
//     (PQsendQueryParams, or PQsendPrepare and PQsendQueryPrepared for a
//     statement the StatementCache prepares; PQpipelineSync), and the
//     DEALLOCATEs of the statements it let go, once the fibers made ready before
//     it have queued theirs: one packet for all the queries a loop turn asked
//     of the connection, not one each (libpq 15's PQpipelineSync sends at
//     once; the socket is corked while they are written). Then it flushes
//     what libpq could not send at once, waiting writable, while the reader
//     keeps reading (libpq's documented flush loop waits for read or write
//     readiness: two fibers wait for one each);
//   - the reader fiber waits readable, consumes input, hands each query's
//     results to its Request in order, and turns notifications into the
//     Channel; it notices when the server goes away.
// Loop thread only.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "pg/statement_cache.hpp"
#include "pg/stats.hpp"
#include "stallwatch/loop.hpp"
#include "stallwatch/pg.hpp"
#include "stallwatch/sync.hpp"

namespace stallwatch::inline v1::pg::detail {

// A query asked and not yet answered. Shared by the querying fiber, the
// writer and the reader: a fiber that gave up (deadline, cancel) leaves it
// behind.
struct Request {
  std::string sql;
  std::vector<Param> params;  // until it is sent
  Event done;
  PGresult* result = nullptr;  // the query's result (its error, if any), owned
  std::string failure;         // set when the connection failed under it
  std::string key;             // its statement's in the StatementCache
  std::string statement;       // the prepared statement it runs; empty: unnamed
  bool parsing = false;        // its statement's Parse went just ahead of it
  bool unprepared = false;     // sent unnamed, not counted (a retry; a DEALLOCATE)
  bool abandoned = false;      // the fiber left; cancel it on the server
  bool cancel_sent = false;
  ~Request() { PQclear(result); }
};

class ConnectionState : public std::enable_shared_from_this<ConnectionState> {
 public:
  // Takes a connected PGconn and puts it in non-blocking pipeline mode
  // (when that fails the state is born broken and every query says why).
  ConnectionState(PGconn* conn, std::string description, const ConnectOptions& options);
  ~ConnectionState();
  ConnectionState(const ConnectionState&) = delete;
  ConnectionState& operator=(const ConnectionState&) = delete;

  // Starts the reader and writer fibers. Once, after construction.
  void start();
  // Fails what is in flight, stops the fibers; the PGconn is closed when the
  // last fiber lets go of this state.
  void close();

  Result query(Deadline deadline, std::string_view sql, std::vector<Param> params);

  bool ok() const noexcept { return !broken_; }
  int in_flight() const noexcept { return static_cast<int>(pending_.size() + unsent_.size()); }
  const std::string& description() const noexcept { return description_; }
  int server_pid() const noexcept { return PQbackendPID(conn_); }
  Channel<Notification>& notifications() noexcept { return notifications_; }
  std::uint64_t notifications_dropped() const noexcept { return notifications_dropped_; }

 private:
  void read_loop();
  void write_loop();
  // Sends the queued queries, corked into one packet when there are several.
  void send_queued();
  // Sends one query and its Sync: unnamed, prepared first, or as the
  // statement prepared before, as the StatementCache says. False once the
  // connection failed.
  bool send(std::shared_ptr<Request> req);
  // Sends a DEALLOCATE for each statement the cache let go of.
  bool close_statements();
  // Queues a query and parks until its result, deadline or cancel.
  std::shared_ptr<Request> run(Deadline deadline, std::string_view sql, std::vector<Param> params,
                               Clock::time_point started, bool unprepared);
  // TCP_CORK on or off; false where the socket has no such option (a Unix
  // socket), which is then not asked again.
  bool cork(bool on);
  // Reads what the socket holds and hands out results and notifications.
  // False once the connection failed.
  bool consume();
  void dispatch_results();
  // What a query's result tells the StatementCache: its Parse taken or
  // refused, its statement gone stale, every statement discarded.
  void learn_from(Request& req, const PGresult* res);
  void take_notifications();
  // The connection is gone: every query in flight fails with reason.
  void fail(const std::string& reason);
  // The query at the front was abandoned: ask the server to cancel it.
  void cancel_front_if_abandoned();
  void complete_front();

  PGconn* conn_;
  int fd_;
  std::string description_;
  bool broken_ = false;
  std::string broken_reason_;
  bool corkable_ = true;
  std::deque<std::shared_ptr<Request>> unsent_;   // queued for the writer
  std::deque<std::shared_ptr<Request>> pending_;  // sent, in the server's order
  StatementCache statements_;
  std::vector<const char*> values_;  // PQsendQueryParams' arrays, reused
  std::vector<Oid> types_;
  Channel<Notification> notifications_{4096};
  std::uint64_t notifications_dropped_ = 0;
  Event write_needed_;  // queries queued, or output left to flush
  Task<void> reader_;
  Task<void> writer_;
  LoopPgStats* stats_;
};

// "host=… port=… dbname=… user=…" of conn, never its password.
std::string describe(const PGconn* conn);

// The pg::error for a failed result: the server's message, detail, SQLSTATE.
[[noreturn]] void throw_result_error(const PGresult* res, std::string_view sql, const std::string& connection);

// libpq's message (it ends in a newline, may span lines) on one line.
std::string one_line(const char* text);

// A query named in messages: its first 80 characters, on one line.
std::string short_sql(std::string_view sql);

}  // namespace stallwatch::inline v1::pg::detail
