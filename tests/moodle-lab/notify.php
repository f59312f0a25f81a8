<?php
// The Moodle side of tests/notify_moodle_plugin.rs: configure message_teamsbridge, create a test
// user who routed assignment notifications to it (the notification preference a user sets on
// their preferences page), send a real notification through message_send(), list the plugin's
// queued retry tasks. Prints one JSON object.
//
//   php notify.php --root=R --action=setup --username=U --bridgeurl=URL --secret=S [--timeout=N]
//   php notify.php --root=R --action=send --username=U --course=ID --subject=TEXT
//   php notify.php --root=R --action=tasks --username=U

define('CLI_SCRIPT', true);
$opts = getopt('', ['root:', 'action:', 'username:', 'bridgeurl:', 'secret:', 'timeout:', 'course:', 'subject:']);
require($opts['root'] . '/config.php');
require_once($CFG->dirroot . '/user/lib.php');
require_once($CFG->libdir . '/messagelib.php');

\core\session\manager::set_user(get_admin());
$username = $opts['username'];
$out = [];

if ($opts['action'] === 'setup') {
    $user = $DB->get_record('user', ['username' => $username, 'mnethostid' => $CFG->mnet_localhost_id]);
    if (!$user) {
        $id = user_create_user((object) ['username' => $username, 'auth' => 'manual',
            'firstname' => 'Élève', 'lastname' => 'Notif ' . $username,
            'email' => $username . '@no-mail.invalid', 'password' => 'Unused-' . random_string(20),
            'mnethostid' => $CFG->mnet_localhost_id, 'confirmed' => 1], true, false);
        $user = $DB->get_record('user', ['id' => $id], '*', MUST_EXIST);
    }
    // What the notification preferences page stores when the user turns on "Microsoft Teams"
    // (and nothing else) for assignment notifications.
    set_user_preference('message_provider_mod_assign_assign_notification_enabled', 'teamsbridge', $user);
    set_config('bridgeurl', $opts['bridgeurl'], 'message_teamsbridge');
    set_config('secret', $opts['secret'], 'message_teamsbridge');
    set_config('timeout', $opts['timeout'] ?? '3', 'message_teamsbridge');
    // Forget an earlier run's "bridge down" pause.
    cache::make_from_params(cache_store::MODE_APPLICATION, 'message_teamsbridge', 'state')->delete('downuntil');
    $processor = $DB->get_record('message_processors', ['name' => 'teamsbridge'], '*', MUST_EXIST);
    $out = ['userid' => (int) $user->id, 'processor_enabled' => (int) $processor->enabled,
        'version' => get_config('message_teamsbridge', 'version')];
} else if ($opts['action'] === 'send') {
    $user = $DB->get_record('user', ['username' => $username], '*', MUST_EXIST);
    $course = (int) $opts['course'];
    $message = new \core\message\message();
    $message->component = 'mod_assign';
    $message->name = 'assign_notification';
    $message->userfrom = core_user::get_noreply_user();
    $message->userto = $user;
    $message->subject = $opts['subject'];
    $message->fullmessage = "Votre devoir « Essai » a reçu un retour.\nNote : 15/20";
    $message->fullmessageformat = FORMAT_PLAIN;
    $message->fullmessagehtml = '';
    $message->smallmessage = $opts['subject'];
    $message->notification = 1;
    $message->contexturl = (new moodle_url('/mod/assign/view.php', ['id' => 1]))->out(false);
    $message->contexturlname = 'Essai';
    $message->courseid = $course;
    $message->customdata = ['messagetype' => 'feedbackavailable', 'cmid' => 1];
    $started = microtime(true);
    $id = message_send($message);
    $out = ['messageid' => $id === false ? null : (int) $id,
        'elapsed_ms' => (int) round((microtime(true) - $started) * 1000)];
}
if ($opts['action'] === 'send' || $opts['action'] === 'tasks') {
    $user = $DB->get_record('user', ['username' => $username], '*', MUST_EXIST);
    $needle = ':u' . $user->id . '"';
    $ids = [];
    foreach (\core\task\manager::get_adhoc_tasks('\\message_teamsbridge\\task\\send_notification') as $task) {
        $data = $task->get_custom_data();
        if (strpos((string) ($data->body ?? ''), $needle) !== false) {
            $ids[] = (int) $task->get_id();
        }
    }
    $out['queued_tasks'] = $ids;
}
echo json_encode($out), "\n";
