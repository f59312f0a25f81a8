<?php
// Prepares the lab for parents (tests/moodle_real.rs): the "parent" role as Moodle's documentation
// describes it (assignable in the user context only, with the capabilities a parent has over their
// child's profile and activity), the bridge's role allowed to assign it, and the report-builder
// custom report through which the bot reads the parent links back (Moodle core has no web-service
// function listing the role assignments of a user context: the "Roles" report source is the only
// read path), with the two report-builder functions in the bridge's service.
// Usage: php parent_links.php --root=<lab>/www/moodle [--role=parent]   (idempotent)
// Prints {"roleid": N, "reportid": M}.

define('CLI_SCRIPT', true);
$opts = getopt('', ['root:', 'role::']);
require($opts['root'] . '/config.php');
require_once($CFG->libdir . '/accesslib.php');

use core_reportbuilder\local\helpers\report as report_helper;
use core_reportbuilder\local\models\report as report_model;
use core_reportbuilder\manager;

\core\session\manager::set_user(get_admin());
$sys = context_system::instance();
$short = $opts['role'] ?? 'parent';

$roleid = $DB->get_field('role', 'id', ['shortname' => $short]);
if (!$roleid) {
    $roleid = create_role('Parent', $short, 'Parent or legal guardian (synced from the ENT)');
}
set_role_contextlevels($roleid, [CONTEXT_USER]);
foreach (['moodle/user:viewdetails', 'moodle/user:readuserblogs', 'moodle/user:readuserposts',
          'moodle/user:viewuseractivitiesreport', 'moodle/user:editprofile'] as $cap) {
    assign_capability($cap, CAP_ALLOW, $roleid, $sys->id, true);
}

$bridge = $DB->get_field('role', 'id', ['shortname' => 'moodle_teams_bridge_ws'], MUST_EXIST);
if (!$DB->record_exists('role_allow_assign', ['roleid' => $bridge, 'allowassign' => $roleid])) {
    core_role_set_assign_allowed($bridge, $roleid);
}
assign_capability('moodle/reportbuilder:viewall', CAP_ALLOW, $bridge, $sys->id, true);
set_config('enablecustomreports', 1);

$service = $DB->get_record('external_services', ['shortname' => 'moodle_teams_bridge'], '*', MUST_EXIST);
foreach (['core_reportbuilder_set_filters', 'core_reportbuilder_retrieve_report'] as $f) {
    if (!$DB->record_exists('external_services_functions', ['externalserviceid' => $service->id, 'functionname' => $f])) {
        $DB->insert_record('external_services_functions', (object)['externalserviceid' => $service->id, 'functionname' => $f]);
    }
}

$name = 'Teams bridge: parent links';
$columns = ['user:fullnamewithlink', 'role:shortname', 'context:link'];
$reportid = $DB->get_field('reportbuilder_report', 'id', ['name' => $name, 'type' => 0]);
if ($reportid && $DB->get_fieldset_select('reportbuilder_column', 'uniqueidentifier', 'reportid = ? ORDER BY columnorder',
        [$reportid]) !== $columns) {
    report_helper::delete_report($reportid);
    $reportid = false;
}
if (!$reportid) {
    $report = report_helper::create_report((object)['name' => $name,
        'source' => \core_role\reportbuilder\datasource\roles::class], false);
    $reportid = $report->get('id');
    // Columns in this order: the assignee (the parent; the link's URL carries their id), the role,
    // the context (the child's profile link: its URL carries the child's id, its text their name).
    foreach ($columns as $col) {
        report_helper::add_report_column($reportid, $col);
    }
    report_helper::add_report_condition($reportid, 'context:level');
    report_helper::add_report_filter($reportid, 'user:userselect');
    $instance = manager::get_report_from_persistent(new report_model($reportid));
    $instance->set_condition_values([
        'context:level_operator' => \core_reportbuilder\local\filters\select::EQUAL_TO,
        'context:level_value' => CONTEXT_USER,
    ]);
}
purge_all_caches();
echo json_encode(['roleid' => (int)$roleid, 'reportid' => (int)$reportid]), "\n";
