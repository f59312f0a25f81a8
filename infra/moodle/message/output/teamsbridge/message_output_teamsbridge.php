<?php
// This file is part of message_teamsbridge, a Moodle message output for moodle-teams-bridge.
//
// It is free software: you can redistribute it and/or modify it under the terms of the GNU General
// Public License as published by the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version. It is distributed WITHOUT ANY WARRANTY; see
// <http://www.gnu.org/licenses/>.


/**
 * The Teams bridge message output: notifications a user (or the admin) routed to "Microsoft
 * Teams" go to the bridge's /api/webhook, which sends them as a Teams message.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

require_once($CFG->dirroot . '/message/output/lib.php');

use message_teamsbridge\bridge_client;
use message_teamsbridge\payload;
use message_teamsbridge\task\send_notification;

/**
 * Posts each notification once, with a short timeout; when the bridge does not take it (down,
 * slow, 5xx), queues it as an adhoc task that retries. After one failure the rest of the
 * request (and for a minute, other requests) queue straight away, so a page sending many
 * notifications while the bridge is down is not held timeout after timeout.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class message_output_teamsbridge extends message_output {
    /** After a failed post, queue without trying for this many seconds. */
    const BACKOFF_SECS = 60;

    /** @var bool the bridge failed during this request */
    private static $downinrequest = false;

    /**
     * Hand one notification to the bridge (or to the retry queue).
     *
     * @param stdClass $eventdata the message plus $eventdata->savedmessageid
     * @return bool true: handled (sent, queued, or deliberately skipped)
     */
    public function send_message($eventdata) {
        $user = $eventdata->userto;
        if ($user->auth === 'nologin' || !empty($user->suspended) || !empty($user->deleted)) {
            return true;
        }
        // Notifications only: personal conversations stay in Moodle.
        if (empty($eventdata->notification)) {
            return true;
        }
        $body = json_encode(payload::from_event($eventdata), JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        if ($body === false) {
            debugging('message_teamsbridge: the notification could not be encoded as JSON', DEBUG_NORMAL);
            return true;
        }
        if (self::bridge_resting()) {
            send_notification::queue($body, 'the bridge failed recently');
            return true;
        }
        [$result, $detail] = bridge_client::post($body);
        if ($result === bridge_client::SENT) {
            return true;
        }
        if ($result === bridge_client::REFUSED) {
            debugging('message_teamsbridge: ' . $detail, DEBUG_NORMAL);
            return true;
        }
        self::rest_bridge();
        send_notification::queue($body, $detail);
        return true;
    }

    /**
     * The bridge failed recently: do not make this page wait for it again.
     *
     * @return bool
     */
    private static function bridge_resting(): bool {
        if (self::$downinrequest) {
            return true;
        }
        $until = (int) self::state()->get('downuntil');
        return $until > time();
    }

    /**
     * Remember a failure for this request and, for other requests, a minute.
     *
     * @return void
     */
    private static function rest_bridge(): void {
        self::$downinrequest = true;
        self::state()->set('downuntil', time() + self::BACKOFF_SECS);
    }

    /**
     * Shared state between requests (the application cache; no table of our own).
     *
     * @return cache
     */
    private static function state() {
        return cache::make_from_params(cache_store::MODE_APPLICATION, 'message_teamsbridge', 'state');
    }

    /**
     * Nothing to configure per user: the bridge finds the Teams user from the Moodle id.
     *
     * @param array $preferences
     * @return string
     */
    public function config_form($preferences) {
        return '';
    }

    /**
     * Nothing to save per user.
     *
     * @param stdClass $form
     * @param array $preferences
     * @return void
     */
    public function process_form($form, &$preferences) {
    }

    /**
     * Nothing to load per user.
     *
     * @param stdClass $preferences
     * @param int $userid
     * @return void
     */
    public function load_data(&$preferences, $userid) {
    }

    /**
     * Usable once the site settings hold an allowed URL and a secret.
     *
     * @return bool
     */
    public function is_system_configured() {
        return bridge_client::config() !== null;
    }

    /**
     * Off unless a user or the admin turns it on for a notification type.
     *
     * @return int
     */
    public function get_default_messaging_settings() {
        return MESSAGE_PERMITTED;
    }

    /**
     * Personal messages are not sent to Teams (see send_message()).
     *
     * @return bool
     */
    public function has_message_preferences() {
        return false;
    }
}
