<?php
// This file is part of message_teamsbridge, a Moodle message output for moodle-teams-bridge.
//
// It is free software: you can redistribute it and/or modify it under the terms of the GNU General
// Public License as published by the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version. It is distributed WITHOUT ANY WARRANTY; see
// <http://www.gnu.org/licenses/>.

/**
 * Version of the Teams bridge message output.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$plugin->version   = 2026120200;        // YYYYMMDDXX.
$plugin->requires  = 2024100100;        // Moodle 4.5.
$plugin->component = 'message_teamsbridge';
$plugin->maturity  = MATURITY_BETA;
$plugin->release   = '0.1.0';
