// pg::connect and the Connection handle.
//
// Each of libpq's connect steps runs on an in_thread pool thread: they read
// files (.pgpass, pg_service.conf, certificates, Kerberos credential caches)
// and resolve host names (getaddrinfo, /etc/hosts), all of which would block
// the loop. The waits between the steps park on the loop, on the descriptor
// PQsocket gives after each step (libpq may open another socket: the next
// address of a host, the retry without SSL). The reactor forgets the
// descriptor before each step, since the step may close it and a new socket
// may take its number.
#include <libpq-fe.h>

#include <memory>
#include <string>
#include <utility>

#include "core/parking.hpp"
#include "pg/connection_state.hpp"
#include "pg/statement_cache.hpp"
#include "stallwatch/in_thread.hpp"
#include "stallwatch/io.hpp"

namespace stallwatch::inline v1::pg {

namespace {

struct ConnCloser {
  PGconn* conn;
  int fd = -1;  // the descriptor the reactor watches for this connect, if any
  ~ConnCloser() {
    if (conn == nullptr) return;
    forget_fd(fd);
    PQfinish(conn);
  }
};

[[noreturn]] void throw_connect_error(PGconn* conn, const std::string& reason) {
  const std::string where = conn != nullptr ? detail::describe(conn) : "";
  throw error("stallwatch: pg::connect " + where + ": " + reason, "", reason, "", where);
}

}  // namespace

Connection connect(std::string_view conninfo, Deadline deadline, ConnectOptions options) {
  detail::check(options);
  // libpq reads the conninfo as the dbname with expand_dbname: a
  // "key=value" string or a URI is expanded, an empty one takes the PG*
  // environment variables.
  const std::string info(conninfo);
  const char* keywords[] = {"dbname", nullptr};
  const char* values[] = {info.c_str(), nullptr};
  ConnCloser closer{in_thread([&] { return PQconnectStartParams(keywords, values, 1); })};
  if (closer.conn == nullptr) throw_connect_error(nullptr, "out of memory");
  if (PQstatus(closer.conn) == CONNECTION_BAD) throw_connect_error(closer.conn, detail::one_line(PQerrorMessage(closer.conn)));

  const std::string description = detail::describe(closer.conn);
  core::as_operation([&] { return "pg::connect " + description; }, deadline, [&] {
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;  // PQconnectStart's first step
    for (;;) {
      if (state == PGRES_POLLING_OK) return;
      if (state == PGRES_POLLING_FAILED) throw_connect_error(closer.conn, detail::one_line(PQerrorMessage(closer.conn)));
      closer.fd = PQsocket(closer.conn);
      if (state == PGRES_POLLING_READING) {
        wait_readable(closer.fd, deadline);
      } else {
        wait_writable(closer.fd, deadline);
      }
      // Forgotten now, and not again as the connect fails: the step may
      // close this socket, and another fiber's new socket may take its number.
      forget_fd(std::exchange(closer.fd, -1));
      state = in_thread([&] { return PQconnectPoll(closer.conn); });
    }
  });
  std::string connected = detail::describe(closer.conn);  // the host and port it reached
  auto state = std::make_shared<detail::ConnectionState>(std::exchange(closer.conn, nullptr), std::move(connected),
                                                        options);
  state->start();
  return Connection(std::move(state));
}

Connection::Connection(std::shared_ptr<detail::ConnectionState> state) : state_(std::move(state)) {}
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    if (state_) state_->close();
    state_ = std::move(other.state_);
  }
  return *this;
}
Connection::~Connection() {
  if (state_) state_->close();
}

Result Connection::query_params(Deadline deadline, std::string_view sql, std::vector<detail::Param> params) {
  if (!state_) throw std::logic_error("stallwatch: pg::Connection::query on a moved-from connection");
  return state_->query(deadline, sql, std::move(params));
}

Channel<Notification>& Connection::notifications() { return state_->notifications(); }
std::uint64_t Connection::notifications_dropped() const noexcept { return state_->notifications_dropped(); }
bool Connection::ok() const noexcept { return state_ && state_->ok(); }
int Connection::in_flight() const noexcept { return state_ ? state_->in_flight() : 0; }
const std::string& Connection::describe() const noexcept { return state_->description(); }
int Connection::server_pid() const noexcept { return state_->server_pid(); }

}  // namespace stallwatch::inline v1::pg
