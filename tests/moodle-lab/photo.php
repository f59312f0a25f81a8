<?php
// Prepares the lab for Entra profile photos (tests/moodle_real_entra.rs): what a school does once
// for ENTRA_SYNC_PHOTO — core_user_update_picture in the bridge's service, "Can upload files"
// (uploadfiles) on that service (webservice/upload.php refuses every upload otherwise), and
// moodle/user:editprofile for the bridge's role (core_user_update_picture checks it in each
// user's context; granted at system level, it reaches every user context).
// Usage: php photo.php --root=<lab>/www/moodle   (idempotent; the lab's configure_ws.php resets
// the service's functions and the role's capabilities, so tests run this before using photos)
// Prints {"serviceid": N, "roleid": M}.

define('CLI_SCRIPT', true);
$opts = getopt('', ['root:']);
require($opts['root'] . '/config.php');
require_once($CFG->libdir . '/accesslib.php');

\core\session\manager::set_user(get_admin());
$sys = context_system::instance();

$service = $DB->get_record('external_services', ['shortname' => 'moodle_teams_bridge'], '*', MUST_EXIST);
if (!$DB->record_exists('external_services_functions',
        ['externalserviceid' => $service->id, 'functionname' => 'core_user_update_picture'])) {
    $DB->insert_record('external_services_functions',
        (object)['externalserviceid' => $service->id, 'functionname' => 'core_user_update_picture']);
}
if (empty($service->uploadfiles)) {
    $DB->set_field('external_services', 'uploadfiles', 1, ['id' => $service->id]);
}
$roleid = $DB->get_field('role', 'id', ['shortname' => 'moodle_teams_bridge_ws'], MUST_EXIST);
assign_capability('moodle/user:editprofile', CAP_ALLOW, $roleid, $sys->id, true);
set_config('disableuserimages', 0);
purge_all_caches();
echo json_encode(['serviceid' => (int)$service->id, 'roleid' => (int)$roleid]), "\n";
