# A freshly installed lab machine: Debian 12 with systemd as PID 1, SSH (keys
# only), sudo and python3 for Ansible, and nftables (Priority: important, in
# every Debian installation but a minimal base like this image's), and nothing
# else. Installing Docker and RabbitMQ is the playbooks' job, as on real hosts.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}

COPY ssh-host-keys.service /etc/systemd/system/ssh-host-keys.service
# A real machine keeps the packages it downloads: the base's docker-clean goes.
RUN rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        systemd systemd-sysv dbus openssh-server sudo python3 iproute2 iputils-ping nftables \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && rm -f /etc/ssh/ssh_host_* \
 && useradd --create-home --shell /bin/bash lab \
 && echo 'lab ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/lab && chmod 0440 /etc/sudoers.d/lab \
 && install -d -m 0700 -o lab -g lab /home/lab/.ssh \
 && printf '%s\n' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' 'PermitRootLogin no' \
        > /etc/ssh/sshd_config.d/lab.conf \
 && systemctl enable ssh ssh-host-keys \
 && systemctl mask getty.target console-getty.service systemd-firstboot.service \
        systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount

# systemd stops on SIGRTMIN+3; `docker stop lab3` then shuts the host down cleanly.
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
