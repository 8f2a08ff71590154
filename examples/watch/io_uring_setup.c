/* A program that sets up an io_uring (by syscall(2), as a program without
 * liburing does): its completions would be waited for in io_uring_enter,
 * which no interposer sees, so the watch says in one line that it cannot
 * watch that loop. The ring is closed at once; the program prints whether
 * the kernel gave it one.
 *
 *   stallwatch-watch -- stallwatch-watch-io-uring */
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
  struct io_uring_params params;
  memset(&params, 0, sizeof params);
  const long fd = syscall(SYS_io_uring_setup, 4, &params);
  printf("io_uring_setup: %s\n", fd >= 0 ? "a ring" : "refused");
  if (fd >= 0) close((int)fd);
  return 0;
}
