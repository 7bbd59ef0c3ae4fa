#include "wire/fd_output.h"

#include "core/error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace mh::wire {

void enlarge_pipe(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) ::fcntl(fd, F_SETPIPE_SZ, k_pipe_bytes);
}

void FdOutput::flush() {
    size_t done = 0;
    while (done < m_buffer.size()) {
        ssize_t n = ::write(m_fd, m_buffer.data() + done, m_buffer.size() - done);
        if (n >= 0) {
            done += static_cast<size_t>(n);
            continue;
        }
        if (errno == EINTR) continue;  // a stop request: finish writing what we hold
        if (errno == EPIPE) throw OutputClosed();
        throw Error(ExitCode::io, errno_text("write(output)", errno));
    }
    m_buffer.clear();
}

}  // namespace mh::wire
