/* A loop that waits by raw system call, which no interposer sees: the watch
 * says so in one line, once, and the program runs as it would unwatched.
 *
 *   stallwatch-watch -- stallwatch-watch-raw-syscall */
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev;
  for (int turn = 0; turn < 5; ++turn) syscall(SYS_epoll_wait, epfd, &ev, 1, 10);
  printf("5 raw waits\n");
  return 0;
}
