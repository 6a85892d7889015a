#!/bin/sh
# Send one SMS through ovh-sms-worker with nothing but redis-cli, and wait for its result.
# The queue layout is contracts/QUEUES.md's; this script is run by tests/test_other_languages.py.
#
#   REDIS_URL=redis://localhost:6379/0 sh producer.sh +33612345678 'Your code is 1234' order-7-code
#
# Prints the SendResult (JSON) and exits 0; exits 2 when no result came within WAIT_S seconds
# (the request stays queued: sending it again under the same id cannot send it twice).
set -eu
to=$1 text=$2 request_id=$3
lane=${LANE:-high}
wait_s=${WAIT_S:-30}
cli() { redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379/0}" "$@"; }

# JSON strings: escape backslashes and double quotes (a real producer uses its JSON library)
json() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

message_id=$(cat /proc/sys/kernel/random/uuid)
request="{\"request_id\":$(json "$request_id"),\"receivers\":[$(json "$to")],\"message\":$(json "$text"),\
\"priority\":\"$lane\",\"no_stop_clause\":true}"
envelope="{\"queue_name\":\"sms.$lane\",\"actor_name\":\"sms_accept_$lane\",\"args\":[$request],\"kwargs\":{},\
\"options\":{\"redis_message_id\":\"$message_id\"},\"message_id\":\"$message_id\",\
\"message_timestamp\":$(date +%s)000}"

# Enqueue as dramatiq does: the body into the queue's hash first, then its id on the list.
cli HSET "dramatiq:sms.$lane.msgs" "$message_id" "$envelope" >/dev/null
cli RPUSH "dramatiq:sms.$lane" "$message_id" >/dev/null

# Wait: block on the request's ready list, then read its result (re-read after each wake-up).
deadline=$(($(date +%s) + wait_s))
while :; do
    result=$(cli GET "sms-worker:result:{$request_id}")
    if [ -n "$result" ]; then
        printf '%s\n' "$result"
        exit 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] || break
    cli BLPOP "sms-worker:ready:{$request_id}" 1 >/dev/null
done
echo "no result for $request_id after $wait_s s: it stays queued" >&2
exit 2
