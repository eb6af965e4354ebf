# SMTP part of scripts/testbed: sourced, defines smtp_up/down/status/env.
#
# A real SMTP server (Debian's python3-aiosmtpd) on 127.0.0.1:$SMTP_PORT that
# stores every message it accepts as one file in the Maildir $TESTBED_DIR/mail
# (messages land in $TESTBED_DIR/mail/new/).
SMTP_PORT="${SMTP_PORT:-2525}"
SMTP_MAIL_DIR="$TESTBED_DIR/mail"

# The port answers with a 220 banner.
smtp_status() {
  # shellcheck disable=SC2016
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    IFS= read -r line <&3 || exit 1
    printf "QUIT\r\n" >&3
    [[ $line == 220* ]]' _ "$SMTP_PORT" 2>/dev/null
}

smtp_up() {
  if pid_alive smtp && smtp_status; then
    log "smtp: reusing the server on 127.0.0.1:$SMTP_PORT"
    return 0
  fi
  stop_daemon smtp # stale pid file, or a server that stopped answering
  if smtp_status; then
    die "127.0.0.1:$SMTP_PORT is taken by a process the testbed did not start (set SMTP_PORT)"
  fi
  [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null ||
    die "Debian's python3-aiosmtpd is missing (scripts/install-deps)"
  mkdir -p "$SMTP_MAIL_DIR/tmp" "$SMTP_MAIL_DIR/new" "$SMTP_MAIL_DIR/cur"
  # Debian's own python: the package is installed for it, not for another
  # python3 that may come first on PATH.
  start_daemon smtp "$TESTBED_DIR/smtp.log" \
    /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" \
    -c aiosmtpd.handlers.Mailbox "$SMTP_MAIL_DIR"
  wait_for "the SMTP server on 127.0.0.1:$SMTP_PORT" 20 smtp_status
}

smtp_down() {
  stop_daemon smtp
}

smtp_env() {
  pid_alive smtp || return 0
  cat <<EOF
export SMTP_HOST='127.0.0.1'
export SMTP_PORT='$SMTP_PORT'
export MAIL_DIR='$SMTP_MAIL_DIR'
EOF
}
