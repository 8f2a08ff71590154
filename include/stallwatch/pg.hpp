// stallwatch/pg.hpp — a cooperative PostgreSQL client on libpq's
// asynchronous API: a query parks its fiber, never the loop.
//
// Built when libpq is found (meson feature `pg`). Everything here is loop
// thread only: a Connection, a Pool and the Results they return belong to the
// loop that made them (a Result may be read anywhere once made).
//
//   auto db = stallwatch::pg::connect("host=127.0.0.1 dbname=app user=app");
//   db.query("INSERT INTO t(id, name) VALUES ($1, $2)", 7, "seven");
//   auto r = db.query(stallwatch::deadline_after(300ms), "SELECT name FROM t WHERE id = $1", 7);
//   std::string name = r.get<std::string>(0, 0);
//
// Parameters go to the server apart from the SQL text (PQsendQueryParams; a
// statement a connection runs often is prepared there: ConnectOptions), never
// spliced into it. Queries from several fibers on one Connection are
// pipelined: the queries a loop turn asked of a connection go out together
// once the fibers ready in that turn have run (one packet), each in its own
// implicit transaction (a Sync after each), and each result or error comes
// back to its own fiber. A Pool
// spreads queries over up to n connections. A query past its deadline is
// cancelled on the server (the cancel request runs on an in_thread pool
// thread: libpq 15's PQcancel blocks) and the fiber gets deadline_exceeded
// naming the query; the connection stays usable.
//
// Connecting: libpq's connect steps (PQconnectStartParams, PQconnectPoll) read
// files (.pgpass, certificates, Kerberos caches) and resolve host names, so
// each step runs on an in_thread pool thread; the waits between the steps
// park on the loop, on the descriptor PQsocket gives after that step.
#pragma once

#include <charconv>
#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "stallwatch/deadline.hpp"
#include "stallwatch/export.hpp"
#include "stallwatch/sync.hpp"

struct pg_result;  // libpq's PGresult

namespace stallwatch {
inline namespace v1 {
namespace pg {

// A query or connection failed. what() names the connection (host, port,
// database, user: never the password), the query, the server's message and
// its SQLSTATE. A NULL or unconvertible value read with Result::get<T> is
// also a pg::error, with an empty sqlstate().
class STALLWATCH_EXPORT error : public std::runtime_error {
 public:
  error(const std::string& what, std::string sqlstate, std::string message, std::string detail,
        std::string connection)
      : std::runtime_error(what),
        sqlstate_(std::move(sqlstate)),
        message_(std::move(message)),
        detail_(std::move(detail)),
        connection_(std::move(connection)) {}
  // Five characters ("23505"), or empty when the server sent none (the
  // connection broke, a conversion failed).
  const std::string& sqlstate() const noexcept { return sqlstate_; }
  // The server's primary message, or libpq's when the failure was local.
  const std::string& message() const noexcept { return message_; }
  // The server's DETAIL field; empty when absent.
  const std::string& detail() const noexcept { return detail_; }
  // "host=… port=… dbname=… user=…" of the connection that failed.
  const std::string& connection() const noexcept { return connection_; }

 private:
  std::string sqlstate_, message_, detail_, connection_;
};

// A notification from LISTEN/NOTIFY.
struct Notification {
  std::string channel;
  std::string payload;
  int sender_pid = 0;
};

namespace detail {

// A parameter in text format: the value (empty for NULL) and its type's OID
// (0: the server infers it, as for string types).
struct Param {
  std::optional<std::string> text;
  unsigned oid = 0;
};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class T>
concept string_like = std::is_convertible_v<const T&, std::string_view>;

// The type a parameter is sent as: bool; int2, int4 or int8 by the integer's
// width (an unsigned one a size up, numeric for 64 bits), so that it
// converts implicitly where the server expects a wider integer, as a literal
// would; float4, float8; 0 lets the server infer a string's type from the
// query, as for a quoted literal.
template <class T>
constexpr unsigned oid_of() {
  using U = std::remove_cvref_t<T>;
  if constexpr (is_optional<U>::value) {
    return oid_of<typename U::value_type>();
  } else if constexpr (std::is_same_v<U, bool>) {
    return 16;
  } else if constexpr (std::is_integral_v<U> && !std::is_same_v<U, char>) {
    constexpr std::size_t bytes = std::is_unsigned_v<U> ? 2 * sizeof(U) : sizeof(U);
    return bytes <= 2 ? 21 : bytes <= 4 ? 23 : bytes <= 8 ? 20 : 1700;
  } else if constexpr (std::is_floating_point_v<U>) {
    return sizeof(U) == 4 ? 700 : 701;
  } else {
    static_assert(string_like<U>, "pg::query parameters: integers, floating point, bool, string types, std::optional");
    return 0;
  }
}

template <class T>
Param to_param(const T& value) {
  using U = std::remove_cvref_t<T>;
  if constexpr (is_optional<U>::value) {
    if (value) return to_param(*value);
    return {std::nullopt, oid_of<U>()};
  } else if constexpr (std::is_same_v<U, bool>) {
    return {value ? "true" : "false", oid_of<U>()};
  } else if constexpr (std::is_integral_v<U> && !std::is_same_v<U, char>) {
    return {std::to_string(value), oid_of<U>()};
  } else if constexpr (std::is_floating_point_v<U>) {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    return {std::string(buf, end), oid_of<U>()};
  } else {
    return {std::string(std::string_view(value)), oid_of<U>()};
  }
}

[[noreturn]] STALLWATCH_EXPORT void throw_conversion(const pg_result* res, int row, int col, const char* type,
                                                     bool was_null);

template <class T>
T from_text(std::string_view text, const pg_result* res, int row, int col) {
  if constexpr (std::is_same_v<T, bool>) {
    if (text == "t" || text == "true") return true;
    if (text == "f" || text == "false") return false;
    throw_conversion(res, row, col, "bool", false);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return std::string(text);
  } else if constexpr (std::is_same_v<T, std::string_view>) {
    return text;
  } else if constexpr (std::is_arithmetic_v<T>) {
    T value{};
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) {
      throw_conversion(res, row, col, std::is_floating_point_v<T> ? "a floating-point number" : "an integer", false);
    }
    return value;
  } else {
    static_assert(std::is_arithmetic_v<T>, "Result::get<T>: integers, floating point, bool, std::string, std::string_view, std::optional");
  }
}

class ConnectionState;
class PoolState;

}  // namespace detail

// Rows of a query's result. Copies share the rows.
class STALLWATCH_EXPORT Result {
 public:
  Result() = default;
  int size() const noexcept;     // rows
  int columns() const noexcept;  // columns
  // Rows an INSERT, UPDATE, DELETE … touched (PQcmdTuples); 0 for others.
  std::int64_t affected() const noexcept;
  std::string_view column_name(int col) const;
  // The column's index; throws pg::error when there is no such column.
  int column(std::string_view name) const;
  bool is_null(int row, int col) const;
  // The value in text format; empty for NULL. Valid while a copy of the
  // Result lives. Throws std::out_of_range outside the rows and columns.
  std::string_view value(int row, int col) const;
  // The value converted to T (integers, floating point, bool, std::string,
  // std::string_view, std::optional<T>: NULL is nullopt). Throws pg::error
  // naming the row, the column and the value on NULL (for a T that is not
  // optional) or a value that does not convert.
  template <class T>
  T get(int row, int col) const {
    if constexpr (detail::is_optional<T>::value) {
      if (is_null(row, col)) return std::nullopt;
      return get<typename T::value_type>(row, col);
    } else {
      if (is_null(row, col)) detail::throw_conversion(res_.get(), row, col, "a value", true);
      return detail::from_text<T>(value(row, col), res_.get(), row, col);
    }
  }

  explicit Result(std::shared_ptr<pg_result> res) : res_(std::move(res)) {}

 private:
  void check(int row, int col) const;
  std::shared_ptr<pg_result> res_;
};

namespace detail {

// The query overloads of Connection and Pool: each sends its parameters in
// text format through Derived::query_params.
template <class Derived>
class QueryOverloads {
 public:
  template <class... Params>
  Result query(std::string_view sql, const Params&... params) {
    return static_cast<Derived&>(*this).query_params(Deadline{}, sql, {to_param(params)...});
  }
  template <class... Params>
  Result query(Deadline deadline, std::string_view sql, const Params&... params) {
    return static_cast<Derived&>(*this).query_params(deadline, sql, {to_param(params)...});
  }
};

}  // namespace detail

// One server connection. Move-only; destroying it closes the connection (its
// queries still in flight get a pg::error). Loop thread.
class STALLWATCH_EXPORT Connection : public detail::QueryOverloads<Connection> {
 public:
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  ~Connection();

  // query(sql, params...) and query(deadline, sql, params...) (QueryOverloads)
  // run sql with params ($1, $2 …) and park until its result. They throw
  // pg::error (the server's error, or the connection broke),
  // deadline_exceeded (the query is cancelled on the server), cancelled.

  // Notifications for the channels this connection LISTENs to, in arrival
  // order. Closed when the connection breaks or closes. When the channel is
  // full (4096), newer notifications are dropped and counted.
  Channel<Notification>& notifications();
  std::uint64_t notifications_dropped() const noexcept;

  // False once the connection broke (server gone, protocol error).
  bool ok() const noexcept;
  // Queries asked and not yet answered (waiting to go out, or sent).
  int in_flight() const noexcept;
  // "host=… port=… dbname=… user=…", without the password.
  const std::string& describe() const noexcept;
  int server_pid() const noexcept;

  Result query_params(Deadline deadline, std::string_view sql, std::vector<detail::Param> params);

  explicit Connection(std::shared_ptr<detail::ConnectionState> state);

 private:
  std::shared_ptr<detail::ConnectionState> state_;
};

// How a connection prepares the statements it runs often. A statement (its
// SQL and its parameters' types) run prepare_threshold times on a connection
// is prepared there on its next run: the server parses and plans it once, and
// later runs only bind and execute it (psycopg 3's automatic preparation; the
// names are psycopg's, and asyncpg, pgx and the JDBC driver prepare by
// default too). The server then chooses between a plan for the values given
// and a generic one as it does for any prepared statement (`plan_cache_mode`).
// A prepared statement that stopped fitting its tables ("cached plan must not
// change result type") or that the session lost (DISCARD ALL, DEALLOCATE) is
// dropped and the run is sent again unprepared, once; inside a transaction
// block the server refuses that run, and the query fails with the first error.
// Turn it off (std::nullopt) behind a transaction-pooling proxy that does not
// carry prepared statements from one client to the next.
struct ConnectOptions {
  // Unprepared runs before a statement is prepared; 0 prepares it on its first
  // run; std::nullopt never prepares.
  std::optional<int> prepare_threshold = 5;
  // Statements kept prepared on one connection; past it the least recently
  // run is closed (DEALLOCATE). 0 never prepares.
  int prepared_max = 100;
};

// Connects with libpq's conninfo ("host=… dbname=…" or a postgresql:// URI;
// empty: the PG* environment variables). Throws pg::error naming the host
// and the reason (refused, authentication …), deadline_exceeded. Loop thread.
// Throws std::invalid_argument when options are out of range.
STALLWATCH_EXPORT Connection connect(std::string_view conninfo, Deadline deadline = {}, ConnectOptions options = {});

// Up to `size` connections of one loop, made as queries need them. A query
// goes to the connection with the fewest queries in flight, opening a new one
// while fewer than `size` are open; when every connection already has
// `pipeline_depth` queries in flight the fiber waits, until its deadline. A
// connection that broke is dropped and replaced by the next query that needs
// one. Each query is its own transaction: for BEGIN … COMMIT use a Connection.
// Dropping the Pool closes its connections once the queries in flight end.
// Each connection is opened with options.
class STALLWATCH_EXPORT Pool : public detail::QueryOverloads<Pool> {
 public:
  Pool(std::string conninfo, int size, int pipeline_depth = 16, ConnectOptions options = {});
  Pool(Pool&&) noexcept;
  Pool& operator=(Pool&&) noexcept;
  ~Pool();

  // query(sql, params...) and query(deadline, sql, params...) as on a
  // Connection (QueryOverloads).

  int size() const noexcept;    // connections open now
  int in_use() const noexcept;  // connections with a query in flight
  std::uint64_t waits() const noexcept;  // times a query waited for a connection

  Result query_params(Deadline deadline, std::string_view sql, std::vector<detail::Param> params);

 private:
  std::shared_ptr<detail::PoolState> state_;  // shared with its queries in flight
};

}  // namespace pg
}  // namespace v1
}  // namespace stallwatch
