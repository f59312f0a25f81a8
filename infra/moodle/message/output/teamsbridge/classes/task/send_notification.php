<?php
// This file is part of message_teamsbridge, a Moodle message output for moodle-teams-bridge.
//
// It is free software: you can redistribute it and/or modify it under the terms of the GNU General
// Public License as published by the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version. It is distributed WITHOUT ANY WARRANTY; see
// <http://www.gnu.org/licenses/>.


namespace message_teamsbridge\task;

use message_teamsbridge\bridge_client;

defined('MOODLE_INTERNAL') || die();

/**
 * A notification the bridge did not take at once (down, slow, busy): Moodle's task runner
 * retries it with its growing fail delay (1 min, 2 min… up to a day, a dozen attempts) until the
 * bridge answers. The body is kept as it was built; every attempt signs it afresh, and its
 * idempotency key lets the bridge deliver it once even if an earlier attempt had got through.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class send_notification extends \core\task\adhoc_task {
    /**
     * Queue one JSON body.
     *
     * @param string $body
     * @param string $reason why it was not sent at once (logged by the task)
     * @return void
     */
    public static function queue(string $body, string $reason): void {
        $task = new self();
        $task->set_custom_data(['body' => $body, 'reason' => $reason]);
        \core\task\manager::queue_adhoc_task($task);
    }

    /**
     * Name shown in the task logs.
     *
     * @return string
     */
    public function get_name() {
        return get_string('tasksend', 'message_teamsbridge');
    }

    /**
     * Send; a failure worth retrying throws, so the task runner retries later.
     *
     * @return void
     */
    public function execute() {
        $data = $this->get_custom_data();
        $body = (string) ($data->body ?? '');
        if ($body === '') {
            mtrace('message_teamsbridge: empty task, dropped');
            return;
        }
        [$result, $detail] = bridge_client::post($body);
        if ($result === bridge_client::SENT) {
            mtrace('message_teamsbridge: notification delivered to the bridge (' . $detail . ')');
            return;
        }
        if ($result === bridge_client::REFUSED) {
            // Loud and final: resending the same body gets the same answer.
            mtrace('message_teamsbridge: ' . $detail . '; not retried');
            return;
        }
        throw new \moodle_exception('bridgedown', 'message_teamsbridge', '', $detail);
    }
}
