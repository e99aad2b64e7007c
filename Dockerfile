# sockguard broker image: the static broker binary (and sgctl, to manage it
# with `docker exec`) on an empty base. There is no shell, no libc and no
# package manager in the image: nothing for a compromised broker to use.
#
# The binaries are built on the host, not in a build stage (this image needs
# no base image to pull). They must be static, so build them with cgo off
# (cmd/broker imports os/user, which links libc when cgo is on):
#
#   CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/broker ./cmd/broker
#   CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/sgctl ./cmd/sgctl
#   docker build -t sockguard/broker:dev .
#
# (`make build` also writes bin/broker and bin/sgctl, but with cgo on: rebuild
# with the commands above before `docker build`.)
#
# Run it as in examples/github-actions-runner/compose.yaml: read-only root
# filesystem, no network, every capability dropped except CHOWN and FOWNER,
# no-new-privileges, the host's docker.sock mounted at /var/run/docker.sock
# and volumes at /run/sockguard, /run/sockguard-admin and /var/lib/sockguard.
FROM scratch

COPY bin/broker /broker
COPY bin/sgctl /sgctl

# Root inside the container, on purpose: the broker connects to the host's
# docker.sock (root:docker 0660), creates each tenant's directory and socket
# and then hands the socket to the runner's uid:gid with chown(2) and
# chmod(2). chown to another uid needs CAP_CHOWN; chmod of a file the broker
# no longer owns needs CAP_FOWNER. Whoever runs the image drops every other
# capability (see the compose example). The broker also refuses socket and
# state directories that are not owned by its own uid.
USER 0

# sgctl reads this, so `docker exec <container> /sgctl ls` needs no flag.
ENV SGCTL_ADMIN_SOCKET=/run/sockguard-admin/admin.sock

ENTRYPOINT ["/broker"]
# The admin socket lives in its own directory so the tenant socket directory
# (shared with runners) never contains it. --host-socket-dir must be added
# when the socket directory is a volume: see the compose example.
CMD ["--upstream", "unix:///var/run/docker.sock", \
     "--socket-dir", "/run/sockguard", \
     "--admin-socket", "/run/sockguard-admin/admin.sock", \
     "--state-dir", "/var/lib/sockguard"]
