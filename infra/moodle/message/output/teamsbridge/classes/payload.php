<?php
// This file is part of message_teamsbridge, a Moodle message output for moodle-teams-bridge.
//
// It is free software: you can redistribute it and/or modify it under the terms of the GNU General
// Public License as published by the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version. It is distributed WITHOUT ANY WARRANTY; see
// <http://www.gnu.org/licenses/>.


namespace message_teamsbridge;

defined('MOODLE_INTERNAL') || die();

/**
 * A Moodle notification as the bridge's notification schema wants it
 * (handler/notify/notification.schema.json, shape "notification"): kind, course, recipients (the
 * one Moodle user it is for), title, text, link and an idempotency key that is the same for
 * every attempt, so the bridge delivers it once however often it is posted.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class payload {
    /** Schema limits. */
    const MAX_TITLE = 250;
    /** Schema limits. */
    const MAX_TEXT = 4000;
    /** Schema limits. */
    const MAX_LINK = 2000;

    /**
     * The schema kind of a Moodle message provider.
     *
     * @param string $component e.g. mod_assign
     * @param string $name provider name, e.g. assign_due_soon
     * @param array $customdata the message's custom data (decoded)
     * @return string assignment_due, grade_released, forum_post, announcement or custom
     */
    public static function kind(string $component, string $name, array $customdata): string {
        global $DB;
        if ($component === 'mod_assign') {
            if (in_array($name, ['assign_due_soon', 'assign_overdue', 'assign_due_digest'], true)) {
                return 'assignment_due';
            }
            $type = (string) ($customdata['messagetype'] ?? '');
            if (strpos($type, 'feedbackavailable') === 0) {
                return 'grade_released';
            }
            return 'custom';
        }
        if ($component === 'moodle' && $name === 'gradenotifications') {
            return 'grade_released';
        }
        if ($component === 'mod_forum' && ($name === 'posts' || $name === 'digests')) {
            $forum = (int) ($customdata['instance'] ?? 0);
            if ($forum > 0 && $DB->get_field('forum', 'type', ['id' => $forum]) === 'news') {
                return 'announcement';
            }
            return 'forum_post';
        }
        return 'custom';
    }

    /**
     * Same notification, same key: site, message row and recipient.
     *
     * @param int $messageid the saved notification's id
     * @param int $userid the recipient
     * @return string matching ^[A-Za-z0-9._:@-]{1,128}$
     */
    public static function idempotency_key(int $messageid, int $userid): string {
        global $CFG;
        $site = substr(sha1($CFG->wwwroot), 0, 10);
        return 'moodle:' . $site . ':n' . $messageid . ':u' . $userid;
    }

    /**
     * Text without markup, cut to a number of characters (not bytes).
     *
     * @param string $text
     * @param int $max
     * @return string
     */
    private static function cut(string $text, int $max): string {
        $text = trim(preg_replace('/[ \t]+/u', ' ', $text) ?? $text);
        if (\core_text::strlen($text) <= $max) {
            return $text;
        }
        return rtrim(\core_text::substr($text, 0, $max - 1)) . '…';
    }

    /**
     * The body for one processed notification.
     *
     * @param \stdClass $eventdata what Moodle hands the processor (message + savedmessageid)
     * @return array ready for json_encode
     */
    public static function from_event($eventdata): array {
        $customdata = $eventdata->customdata ?? null;
        if (is_string($customdata)) {
            $customdata = json_decode($customdata, true);
        }
        $customdata = is_array($customdata) ? $customdata : (array) ($customdata ?? []);

        $title = self::cut(format_string((string) ($eventdata->subject ?? ''), true,
            ['context' => \context_system::instance(), 'escape' => false]), self::MAX_TITLE);
        if ($title === '') {
            $title = self::cut((string) ($eventdata->contexturlname ?? ''), self::MAX_TITLE);
        }
        if ($title === '') {
            $title = get_string('defaulttitle', 'message_teamsbridge');
        }
        $text = (string) ($eventdata->fullmessage ?? '');
        if (trim($text) === '' && !empty($eventdata->fullmessagehtml)) {
            $text = html_to_text($eventdata->fullmessagehtml, 0, false);
        }
        if (trim($text) === '') {
            $text = (string) ($eventdata->smallmessage ?? '');
        }

        $body = [
            'kind' => self::kind((string) $eventdata->component, (string) $eventdata->name, $customdata),
            'recipients' => [(int) $eventdata->userto->id],
            'title' => $title,
            'text' => self::cut($text, self::MAX_TEXT),
            'idempotency_key' => self::idempotency_key((int) $eventdata->savedmessageid,
                (int) $eventdata->userto->id),
        ];
        $course = (int) ($eventdata->courseid ?? 0);
        // The front page (SITEID) has no channel; the bridge checks any other course exists.
        if ($course > SITEID) {
            $body['course'] = $course;
        }
        $link = (string) ($eventdata->contexturl ?? '');
        if ($link !== '' && \core_text::strlen($link) <= self::MAX_LINK && preg_match('~^https?://\S+$~', $link)) {
            $body['link'] = $link;
        }
        return $body;
    }
}
