/* HTTP client benchmark, plain libcurl: one thread, one curl multi handle
 * driven by epoll through curl's socket interface (CURLMOPT_SOCKETFUNCTION,
 * CURLMOPT_TIMERFUNCTION, curl_multi_socket_action), N easy handles kept in
 * flight doing keep-alive GETs of URL for a warm-up second and then SECONDS
 * seconds: the ceiling for any libcurl integration. Prints "requests=R
 * seconds=S rps=X maxrss_kib=M cpu_us_per_request=C" for the SECONDS after
 * the warm-up (C: user and system time over the requests).
 *
 *   stallwatch-bench-http-curl-multi URL N SECONDS
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>

static int epfd;
static long timeout_ms = -1;
static unsigned long long requests, failures;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double process_cpu_seconds(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

static int on_socket(CURL* easy, curl_socket_t fd, int what, void* u, void* sockp) {
  (void)easy; (void)u; (void)sockp;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    return 0;
  }
  struct epoll_event ev = {0};
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
  ev.data.fd = fd;
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0) epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
  return 0;
}

static int on_timer(CURLM* m, long ms, void* u) {
  (void)m; (void)u;
  timeout_ms = ms;
  return 0;
}

struct body { size_t n; };

static size_t on_data(char* p, size_t s, size_t n, void* u) {
  (void)p;
  ((struct body*)u)->n += s * n;
  return s * n;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s URL CONCURRENCY SECONDS\n", argv[0]);
    return 2;
  }
  const char* url = argv[1];
  int concurrency = atoi(argv[2]);
  double seconds = atof(argv[3]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
  struct body* bodies = calloc((size_t)concurrency, sizeof *bodies);
  for (int i = 0; i < concurrency; ++i) {
    CURL* easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &bodies[i]);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, &bodies[i]);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L); /* as curl::perform sets: no SIGPIPE juggling per call */
    curl_multi_add_handle(multi, easy);
  }
  double warm = now() + 1, end = warm + seconds;
  /* At the end of the warm-up: the time, requests and CPU so far. */
  int measuring = 0;
  double measured_from = 0, cpu_before = 0;
  unsigned long long requests_before = 0;
  int running = 0, in_flight = concurrency;
  struct epoll_event events[64];
  while (in_flight > 0) {
    int n = epoll_wait(epfd, events, 64, timeout_ms < 0 ? 1000 : (int)timeout_ms);
    if (n == 0) curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    for (int i = 0; i < n; ++i) {
      int flags = ((events[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                  ((events[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                  ((events[i].events & EPOLLERR) ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(multi, events[i].data.fd, flags, &running);
    }
    if (timeout_ms == 0) curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    CURLMsg* msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      CURLcode rc = msg->data.result;
      struct body* b;
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char**)&b);
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      if (rc == CURLE_OK && status == 200 && b->n == 5) ++requests;
      else ++failures;
      b->n = 0;
      curl_multi_remove_handle(multi, easy);
      double t = now();
      if (!measuring && t >= warm) {
        measuring = 1;
        measured_from = t;
        requests_before = requests;
        cpu_before = process_cpu_seconds();
      }
      if (t < end) curl_multi_add_handle(multi, easy);
      else { curl_easy_cleanup(easy); --in_flight; }
    }
  }
  double elapsed = now() - measured_from;
  double cpu = process_cpu_seconds() - cpu_before;
  double counted = (double)(requests - requests_before);
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  printf("requests=%.0f failures=%llu seconds=%.3f rps=%.0f maxrss_kib=%ld cpu_us_per_request=%.1f\n", counted,
         failures, elapsed, counted / elapsed, usage.ru_maxrss, cpu * 1e6 / counted);
  curl_multi_cleanup(multi);
  return failures == 0 ? 0 : 1;
}
