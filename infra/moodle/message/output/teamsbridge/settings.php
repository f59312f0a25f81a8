<?php
// This file is part of message_teamsbridge, a Moodle message output for moodle-teams-bridge.
//
// It is free software: you can redistribute it and/or modify it under the terms of the GNU General
// Public License as published by the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version. It is distributed WITHOUT ANY WARRANTY; see
// <http://www.gnu.org/licenses/>.

/**
 * Site settings: where the bridge listens and the secret both sides share.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

if ($ADMIN->fulltree) {
    $settings->add(new admin_setting_configtext('message_teamsbridge/bridgeurl',
        new lang_string('bridgeurl', 'message_teamsbridge'),
        new lang_string('bridgeurl_desc', 'message_teamsbridge'), '', PARAM_URL, 60));
    $settings->add(new admin_setting_configpasswordunmask('message_teamsbridge/secret',
        new lang_string('secret', 'message_teamsbridge'),
        new lang_string('secret_desc', 'message_teamsbridge'), ''));
    $settings->add(new admin_setting_configtext('message_teamsbridge/timeout',
        new lang_string('timeout', 'message_teamsbridge'),
        new lang_string('timeout_desc', 'message_teamsbridge'), 3, PARAM_INT, 4));
}
